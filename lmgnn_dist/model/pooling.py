"""The LM's pooling: how a node's token states become its embedding (``model.pooling``).

``cls`` takes the last layer's first token ([CLS]); ``mean`` averages the last layer over the
real (non-pad) tokens, as sentence-transformers' ``Pooling`` does; ``max`` takes the largest
value per channel over the real tokens. ``normalize`` then divides by the L2 norm
(sentence-transformers' ``Normalize`` module).

``auto`` is what the checkpoint folder declares (:func:`declared_pooling`), read from the
sentence-transformers files ``modules.json`` and ``<pooling path>/config.json``; a folder
without ``modules.json`` declares [CLS] without normalisation. all-MiniLM-L6-v2 declares
``mean+normalize``. A saved LM folder (:meth:`~lmgnn_dist.model.lm.LMEncoder.save_pretrained`)
gets the files of the pooling it was trained with (:func:`write_pooling_files`), so ``auto``
on a stage's ``lm/`` resolves as the LM was used, and sentence-transformers loads it so.

Reading the files needs neither torch nor transformers; :func:`pool` (torch) is imported
lazily by the LM encoder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..config import POOLING_KINDS, ConfigError

#: the pooling modes an :class:`~lmgnn_dist.model.lm.LMEncoder` computes
POOLING_MODES = ("cls", "mean", "max")
MODULES_FILE = "modules.json"
#: sentence-transformers' Pooling config keys -> our mode
_ST_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
             "pooling_mode_max_tokens": "max"}
_ST_UNSUPPORTED = ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                   "pooling_mode_lasttoken")
_ST_PREFIX = "sentence_transformers.models."


@dataclass(frozen=True)
class Pooling:
    """A resolved pooling: ``mode`` (one of :data:`POOLING_MODES`) and whether the pooled
    vector is L2-normalised. ``str()`` is the form recorded in ``metrics.json``:
    ``cls``, ``mean``, ``mean+normalize``."""

    mode: str = "cls"
    normalize: bool = False

    def __post_init__(self):
        if self.mode not in POOLING_MODES:
            raise ValueError(f"pooling mode {self.mode!r}: one of {POOLING_MODES}")

    def __str__(self) -> str:
        return self.mode + ("+normalize" if self.normalize else "")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (named by {MODULES_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable JSON file ({exc})") from None


def _pooling_mode(path: Path) -> str:
    """The one mode a sentence-transformers ``Pooling`` config ``path`` turns on."""
    cfg = _read_json(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(cfg).__name__}")
    if "pooling_mode" in cfg:  # sentence-transformers >= 5: "mean", or a list of modes
        mode = cfg["pooling_mode"]
        mode = mode[0] if isinstance(mode, list) and len(mode) == 1 else mode
        if not isinstance(mode, str) or mode not in POOLING_MODES:
            raise ConfigError(f"{path}: pooling_mode={mode!r} is not supported (supported: one "
                              f"of {', '.join(POOLING_MODES)}); set model.pooling to cls or mean")
        return mode
    on = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
    for key in on:
        if key not in _ST_MODES:
            why = "not supported" if key in _ST_UNSUPPORTED else "unknown"
            raise ConfigError(f"{path}: {key}=true is {why} (supported: "
                              f"{', '.join(_ST_MODES)}); set model.pooling to cls or mean")
    if len(on) != 1:
        raise ConfigError(f"{path}: {'no' if not on else 'several'} pooling_mode_* keys are "
                          f"true ({', '.join(on) or 'none'}); exactly one is supported")
    return _ST_MODES[on[0]]


def declared_pooling(folder: Union[str, Path]) -> Pooling:
    """The pooling a model folder declares, from sentence-transformers' files.

    Rules: no ``modules.json`` -> ``cls``, no normalisation. Otherwise ``modules.json`` is a
    list of modules, each ``{"type": "sentence_transformers.<...>.<Name>", "path": ...}``;
    allowed are ``Transformer``, at most one ``Pooling`` (its mode from
    ``<path>/config.json``: ``pooling_mode`` ``"cls"``/``"mean"``/``"max"`` (the
    sentence-transformers >= 5 form, which wins), else exactly one of
    ``pooling_mode_cls_token``, ``pooling_mode_mean_tokens``, ``pooling_mode_max_tokens``
    true) and ``Normalize`` after it (-> ``normalize``). No ``Pooling`` module -> ``cls``.

    Raises
    ------
    ConfigError, one line naming the file and the key: unreadable JSON, a module type not
    listed above (``Dense``, ``LayerNorm``, ...), ``Normalize`` before ``Pooling``, a pooling
    mode not supported (``pooling_mode_mean_sqrt_len_tokens``, ``..._weightedmean_tokens``,
    ``..._lasttoken``) or unknown, several modes (concatenated) or none.
    """
    folder = Path(folder)
    path = folder / MODULES_FILE
    if not path.is_file():
        return Pooling()
    modules = _read_json(path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path}: expected a list of module objects")
    mode, normalize = None, False
    for i, m in enumerate(modules):
        kind = str(m.get("type", ""))  # sentence_transformers.models.Pooling, or (>= 5)
        # sentence_transformers.sentence_transformer.modules.pooling.Pooling
        name = kind.rsplit(".", 1)[-1] if kind.startswith("sentence_transformers.") else kind
        if name == "Transformer":
            continue
        if name == "Pooling" and mode is None:
            mode = _pooling_mode(folder / str(m.get("path", "")) / "config.json")
        elif name == "Normalize" and mode is not None and not normalize:
            normalize = True
        else:
            where = ({"Pooling": "a second Pooling module",
                      "Normalize": "a Normalize module before any Pooling, or a second one"}
                     .get(name, "not supported"))
            raise ConfigError(f"{path}: module [{i}] type={kind!r}: {where} (supported: "
                              "Transformer, one Pooling, then Normalize); set model.pooling "
                              "to cls or mean")
    return Pooling(mode or "cls", normalize)


def resolve_pooling(setting: str, folder: Union[str, Path]) -> Pooling:
    """``model.pooling`` for the model in ``folder``: ``cls`` / ``mean`` as said (no
    normalisation), ``auto`` -> :func:`declared_pooling` of ``folder``.

    Raises ConfigError naming ``model.pooling`` for a setting not in
    :data:`~lmgnn_dist.config.POOLING_KINDS`, and :func:`declared_pooling`'s errors."""
    if setting == "auto":
        return declared_pooling(folder)
    if setting not in POOLING_KINDS:
        raise ConfigError(f"model.pooling must be one of {POOLING_KINDS}, got {setting!r}")
    return Pooling(setting)


def write_pooling_files(folder: Union[str, Path], pooling: Pooling, dim: int) -> None:
    """Write sentence-transformers' ``modules.json``, ``1_Pooling/config.json`` (``dim``:
    the hidden size) and, with ``normalize``, ``2_Normalize/`` into the model folder
    ``folder``, declaring ``pooling`` (:func:`declared_pooling` reads it back). Raises
    OSError."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": _ST_PREFIX + "Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": _ST_PREFIX + "Pooling"}]
    if pooling.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": _ST_PREFIX + "Normalize"})
        (folder / "2_Normalize").mkdir(parents=True, exist_ok=True)
    config = {"word_embedding_dimension": int(dim),
              **{key: mode == pooling.mode for key, mode in _ST_MODES.items()},
              **{key: False for key in _ST_UNSUPPORTED}}
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n")


def pool(hidden, mask, pooling: Pooling):
    """Pool the last layer's token states into one vector per row.

    - ``cls``: ``e_i = H[i, 0]``;
    - ``mean``: ``e_i = sum_t m_it H[i, t] / max(sum_t m_it, 1e-9)`` (pad positions
      ``m_it = 0`` excluded; sentence-transformers' mean pooling);
    - ``max``: ``e_i[c] = max_{t: m_it = 1} H[i, t, c]``;
    - ``normalize``: then ``e_i / max(||e_i||_2, 1e-12)``.

    Shapes: ``hidden`` ``[B, L, H]`` (any float dtype, e.g. bf16 under autocast), ``mask``
    int/bool ``[B, L]`` (1 = real token) -> float32 ``[B, H]``; the sums run in float32.
    Autograd flows through every mode.
    """
    import torch

    if pooling.mode == "cls":
        out = hidden[:, 0].float()
    elif pooling.mode == "mean":
        m = mask.to(hidden.device, torch.float32).unsqueeze(-1)
        out = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
    else:  # max
        real = mask.to(hidden.device).bool().unsqueeze(-1)
        out = hidden.float().masked_fill(~real, -1e9).max(1).values
    if pooling.normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=1)
    return out
