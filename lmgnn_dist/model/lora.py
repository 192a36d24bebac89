"""Low-rank adaptation (LoRA) of an LM through Hugging Face PEFT (``model.lora``).

LoRA (Hu et al., 2022, eq. 3) keeps a pre-trained weight ``W0 [d_out, d_in]`` frozen and
trains ``h = W0 x + (alpha / r) B A x`` with ``A [r, d_in]`` (random) and ``B [d_out, r]``
(zero at the start, so the adapted LM starts as the loaded one). SimTeG (Duan et al., 2023)
fine-tunes its LMs on text-attributed graphs this way to keep the embeddings a GNN later reads
from drifting far from the pre-trained ones.

Only the stages that train an LM adapt it (stage 1, stage 3, GLEM's LM phase); the adapters
are merged into the weights (:func:`merged`) whenever an LM is saved or its weights are
hashed, so a stage checkpoint, the export and every later stage see a plain Hugging Face model.
"""
from __future__ import annotations

import copy
import warnings

from torch import nn

__all__ = ["apply_lora", "check_lora_targets", "merged"]


def _import_peft(rank: int):
    """The ``peft`` module, imported without its FutureWarnings about the transformers and
    torch versions (< 5.6, < 2.6) that DGL 2.1's pins force. Raises ImportError naming the
    package and ``model.lora.rank``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import peft
    except ImportError as e:  # pragma: no cover - peft is in setup.py's requirements
        raise ImportError(f"model.lora.rank={rank} needs the 'peft' package "
                          f"(pip install peft): {e}") from e
    return peft


def apply_lora(model: nn.Module, settings) -> nn.Module:
    """``model`` (a Hugging Face ``PreTrainedModel``) wrapped by ``peft.get_peft_model`` with
    rank ``settings.rank`` adapters on ``settings.target_modules`` (empty: PEFT's default for
    the architecture, ``query`` and ``value`` for BERT), scaling ``settings.alpha / rank`` and
    dropout ``settings.dropout`` on the adapters' input; every other parameter is frozen
    (``requires_grad=False``). The forward pass (keyword arguments, output) is the model's.

    Raises ImportError naming the ``peft`` package when it is not installed, and ValueError
    (PEFT's ``NoMatchingPeftModuleError``) when no target module exists in ``model``, a
    matched module is not a layer PEFT adapts, or, with empty ``target_modules``, PEFT has no
    default for the architecture (:func:`check_lora_targets` asks this, and that every name
    matches, before a run starts)."""
    peft = _import_peft(settings.rank)
    targets = list(settings.target_modules) or None
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha,
                             lora_dropout=settings.dropout, target_modules=targets, bias="none")
    return peft.get_peft_model(model, config)


def merged(model: nn.Module) -> nn.Module:
    """The plain Hugging Face model computing what the adapted ``model`` (:func:`apply_lora`)
    computes: a deep copy with ``W0 + (alpha / r) B A`` merged into each adapted weight (PEFT's
    ``merge_and_unload``; ``model`` itself keeps training). About 0.3 s and one model's memory
    (~90 MB for MiniLM)."""
    return copy.deepcopy(model).merge_and_unload()


def check_lora_targets(folder, settings, key: str = "model.lm") -> None:
    """Raise ConfigError, one line naming ``model.lora.target_modules`` and ``key`` (the config
    key of the LM at ``folder``, a Hugging Face model folder), when :func:`apply_lora` would
    fail on that LM (no name matches a module, a matched module PEFT cannot adapt, no PEFT
    default for the architecture) or would silently skip a name: PEFT adapts the modules any
    name matches, so ``[query, qurey]`` would train ``query`` only. Asks PEFT itself (its
    wrapping and its list rule, exact or ``.``-suffix match) on a weightless copy of the
    architecture (``AutoModel`` built on the ``meta`` device from the folder's
    ``config.json``: no weights read, ~0.1 s after the imports), so a typo ends the run
    before any process starts rather than in a trainer."""
    import torch
    from transformers import AutoConfig, AutoModel

    from ..config import ConfigError

    with torch.device("meta"):
        skeleton = AutoModel.from_config(AutoConfig.from_pretrained(folder))
    peft = _import_peft(settings.rank)
    from peft.tuners.tuners_utils import check_target_module_exists

    names = [n for n, _ in skeleton.named_modules()]
    where = f"model.lora.target_modules={list(settings.target_modules)} for {key} ({folder})"
    one_name = {t: peft.LoraConfig(target_modules=[t]) for t in settings.target_modules}
    missing = [t for t, cfg in one_name.items()
               if not any(check_target_module_exists(cfg, n) for n in names)]
    if missing:
        raise ConfigError(f"{where}: no module named {missing} (or ending in '.' + name) in "
                          f"{type(skeleton).__name__}")
    try:
        apply_lora(skeleton, settings)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
