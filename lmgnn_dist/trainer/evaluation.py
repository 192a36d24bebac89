"""Evaluation of a task head, and best-epoch selection.

:func:`evaluate` runs the task's metrics over every trainer's share of a split (collective);
:class:`BestModel` keeps the head (and learnable-embedding rows) of the epoch with the best
validation ``task.primary`` metric (``task.eval_metric``), as GraphStorm's evaluators pick the
best epoch.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Dict, Optional, Sequence

from ..model.joint import TaskModel
from ..tasks import Features, Task


def evaluate(task: Task, head: TaskModel, features: Features, split: str,
             fanouts: Sequence[int], batch_size: int,
             keep_predictions: bool = False) -> Dict[str, object]:
    """The task's metrics of ``head`` on ``split`` (``val``/``test``) over all trainers
    (collective), with full neighbourhoods (none at all for the graph-free MLP head, whose
    ``fanouts`` are ``[0]``: its ``graph_free`` says so). ``features``: input nodes -> GNN
    inputs. ``keep_predictions``: node classification adds ``predictions`` (every node of
    the split, :meth:`~lmgnn_dist.tasks.Task.evaluate`); a stage's final test evaluation
    keeps them and :meth:`~.base.StageTrainer.finish` writes them. The head is put back in
    training mode afterwards."""
    with eval_mode(head):
        return task.evaluate(head, features, split, fanouts, batch_size,
                             full_neighbors=not head.encoder.graph_free,
                             keep_predictions=keep_predictions)


@contextlib.contextmanager
def eval_mode(head: TaskModel):
    """``head`` in eval mode (no dropout) inside the block, back in training mode after it."""
    head.eval()
    try:
        yield head
    finally:
        head.train()


def evaluate_splits(task: Task, head: TaskModel, features: Features, fanouts: Sequence[int],
                    batch_size: int, splits: Sequence[str] = ("val", "test"),
                    keep_predictions: Sequence[str] = ("test",)) -> Dict[str, object]:
    """:func:`evaluate` on each of ``splits``, keys prefixed (``val_acc``, ``test_acc``);
    the splits of ``keep_predictions`` keep their per-node predictions
    (``test_predictions``)."""
    out: Dict[str, object] = {}
    for split in splits:
        out.update(prefixed(split, evaluate(task, head, features, split, fanouts, batch_size,
                                            keep_predictions=split in keep_predictions)))
    return out


def scalar_metrics(metrics: Dict[str, object]) -> Dict[str, float]:
    """The numeric entries of ``metrics`` (per-class dicts and supports left out)."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def prefixed(split: str, metrics: Dict[str, object]) -> Dict[str, object]:
    """``{"acc": .9}`` -> ``{"val_acc": .9}``."""
    return {f"{split}_{k}": v for k, v in metrics.items()}


def describe(metric_names: Sequence[str], metrics: Dict[str, object], split: str = "val") -> str:
    """``"val_acc 0.9000  val_macro_f1 0.8800"``: the scalar metrics of ``split`` present."""
    return "  ".join(f"{split}_{k} {metrics[f'{split}_{k}']:.4f}"
                     for k in metric_names if f"{split}_{k}" in metrics)


class BestModel:
    """The best validation result so far (higher ``primary`` is better) and the model state
    that produced it: a deep copy of the head's ``state_dict``, when given this trainer's
    learnable-embedding rows (``LearnableEmbeddings.local_rows``) and the LMs' ``state_dict``
    (stage 3, copied to the CPU).

    ``epoch`` is the epoch (stage 2) or step (stages 1 and 3; 0 = the model the stage started
    from) of the kept model. :meth:`state` / :meth:`from_state` round-trip it through a
    progress checkpoint.
    """

    def __init__(self, primary: str):
        self.primary = primary
        self.val: Optional[Dict[str, object]] = None
        self.epoch = -1
        self.head_state: Optional[dict] = None
        self.rows = None
        self.lms_state: Optional[dict] = None

    def update(self, epoch: int, val: Dict[str, object], head: TaskModel, learnable=None,
               lms=None) -> bool:
        """Keep ``head`` (and ``learnable``'s rows, ``lms``' weights) if ``val[primary]``
        beats the best so far (ties keep the earlier one); returns whether it did."""
        if self.val is not None and not val[self.primary] > self.val[self.primary]:
            return False
        self.val, self.epoch = val, epoch
        self.head_state = copy.deepcopy(head.state_dict())
        self.rows = learnable.local_rows() if learnable is not None else None
        self.lms_state = ({k: v.detach().to("cpu", copy=True)
                           for k, v in lms.state_dict().items()} if lms is not None else None)
        return True

    def restore(self, head: TaskModel, learnable=None, lms=None) -> None:
        """Load the kept state into ``head`` (and ``learnable``, ``lms``)."""
        head.load_state_dict(self.head_state)
        if learnable is not None:
            learnable.restore(self.rows)
        if lms is not None and self.lms_state is not None:
            lms.load_state_dict(self.lms_state)

    def state(self) -> dict:
        return {"best": self.val, "best_epoch": self.epoch, "best_state": self.head_state,
                "best_rows": self.rows, "best_lms": self.lms_state}

    @classmethod
    def from_state(cls, primary: str, state: dict) -> "BestModel":
        best = cls(primary)
        best.val, best.epoch = state.get("best"), state.get("best_epoch", -1)
        best.head_state, best.rows = state.get("best_state"), state.get("best_rows")
        best.lms_state = state.get("best_lms")
        return best
