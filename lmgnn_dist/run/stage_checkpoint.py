"""Reading a stage checkpoint (``<run>/<stage>/``, written by :mod:`lmgnn_dist.run.checkpoint`).

A stage folder holds ``metrics.json`` (its presence: the checkpoint is complete), ``gnn.pt``
(the task head's state dict: GNN encoder + decoder) when the stage trained one,
``node_emb/<ntype>/part-<rank>.pt`` (learnable embeddings of text-less types) and the LMs it
changed: ``lm/`` (the shared LM) and ``lm_<ntype>/`` (a node type's own LM, see
:func:`~lmgnn_dist.data.node_inputs.lm_folder`). Stages 1 and 3 write LM folders; the baseline
and stage 2 do not.

Which LM a stage's model uses (:meth:`StageCheckpoint.lm_sources`), per LM key: the stage's
own ``lm*/`` folder if present, else stage 1's of the same run (stages after stage 1 start
from its LMs; not the baseline, which runs on the configured LMs), else the configured model
(``model.lm`` / ``model.encoders``). Both the trainers' start points
(:func:`~lmgnn_dist.trainer.builders.build_lms` of ``StageStart.lm_dir``) and the embedding export
use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from ..stages import BY_NAME
from .checkpoint import METRICS
from ..data.node_inputs import lm_folder

__all__ = ["CheckpointError", "StageCheckpoint", "check_state_dict"]



class CheckpointError(ValueError):
    """A stage checkpoint cannot be used; the message starts with the offending path."""


@dataclass(frozen=True)
class StageCheckpoint:
    """One stage folder ``folder`` of the run folder ``run_dir`` (default: its parent).

    Attributes
    ----------
    folder : the stage folder (``<run>/stage3``).
    run_dir : the run's ``output_dir``, where stage 1's folder is looked up.
    """

    folder: Path
    run_dir: Optional[Path] = None

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))
        object.__setattr__(self, "run_dir", Path(self.run_dir) if self.run_dir is not None
                           else self.folder.parent)

    @property
    def gnn_path(self) -> Path:
        return self.folder / "gnn.pt"

    @property
    def node_emb_dir(self) -> Path:
        return self.folder / "node_emb"

    @property
    def metrics_path(self) -> Path:
        return self.folder / METRICS

    def is_complete(self) -> bool:
        """``metrics.json`` exists (a checkpoint folder is renamed into place complete)."""
        return self.metrics_path.is_file()

    def lm_dir(self, key: str) -> Optional[Path]:
        """This stage's own folder of LM ``key`` (``lm`` / ``lm_<ntype>``), or None."""
        d = self.folder / lm_folder(key)
        return d if d.is_dir() else None

    def lms_from(self) -> Optional["StageCheckpoint"]:
        """The run's complete checkpoint this stage's LMs start from (the stage table's
        ``lms_from``, :mod:`lmgnn_dist.stages`: stage 1 for stages 2 and 3; a folder with
        another name is taken as a later stage), or None (not complete, or the baseline /
        stage 1, which start from the configured LMs)."""
        row = BY_NAME.get(self.folder.name)
        source = row.lms_from if row is not None else "stage1"
        if source is None:
            return None
        s = StageCheckpoint(self.run_dir / source, self.run_dir)
        return s if s.folder.resolve() != self.folder.resolve() and s.is_complete() else None

    def lm_sources(self, lm_paths: Dict[str, str]) -> Dict[str, str]:
        """LM key -> the folder (or configured model path / alias) the LM starts from, for
        every key of ``lm_paths`` (LM key -> configured model,
        :attr:`~lmgnn_dist.trainer.builders.NodeInputEncoders.lm_paths`): the rule of the module
        docstring. Reads only folder names; raises nothing."""
        s1 = self.lms_from()
        out = {}
        for key, configured in lm_paths.items():
            found = self.lm_dir(key) or (s1.lm_dir(key) if s1 is not None else None)
            out[key] = str(found) if found is not None else configured
        return out

    def check_complete(self) -> None:
        """Raises CheckpointError naming the folder if it is missing, not a folder, or has no
        ``metrics.json`` (not a stage checkpoint, or one still being written)."""
        f = self.folder
        if not f.exists():
            raise CheckpointError(f"{f}: no such stage checkpoint folder")
        if not f.is_dir():
            raise CheckpointError(f"{f}: not a folder; give a stage folder such as <run>/stage3")
        if not self.is_complete():
            raise CheckpointError(f"{f}: not a complete stage checkpoint (no {METRICS}; "
                                  "give a stage folder such as <run>/stage3)")

    def load_gnn_state(self) -> dict:
        """``gnn.pt``'s state dict (on the CPU).

        Raises
        ------
        CheckpointError naming ``gnn.pt``: missing (a stage without a GNN), unreadable,
        truncated or not a state dict.
        """
        import torch

        p = self.gnn_path
        if not p.is_file():
            raise CheckpointError(f"{p}: not found; the checkpoint must be a stage that trained "
                                  "a GNN (baseline, stage2 or stage3)")
        try:
            state = torch.load(p, map_location="cpu")
        except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{p}: cannot be loaded (half-written or corrupt?): "
                                  f"{msg}") from None
        if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
            raise CheckpointError(f"{p}: not a state dict of tensors")
        return state


def check_state_dict(path: Path, state: dict, model) -> None:
    """``state`` (loaded from ``path``) must fit ``model`` exactly: the same keys and shapes.

    Raises
    ------
    CheckpointError naming ``path`` and the first few missing / unexpected keys or shape
    mismatches (e.g. ``model.hidden_size`` or ``model.num_layers`` differing from the run's).
    """
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in want if k not in have]
    problems += [f"unexpected {k}" for k in have if k not in want]
    problems += [f"{k}: {have[k]} in the file, {want[k]} in the model"
                 for k in want if k in have and have[k] != want[k]]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: does not fit the model the config builds: "
                              + "; ".join(problems[:3]) + more
                              + " (the config's model section must be the run's)")
