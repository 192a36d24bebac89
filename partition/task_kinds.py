"""The task table: every task kind the project knows, in one place below everyone.

Each row says what a task targets, which columns its target table needs, which scalar
metrics it reports and which one selects models by default. Importable without DGL or
torch, so the partitioner (:mod:`partition.task_check`), the config (``task.kind``,
``task.eval_metric``), the task heads (:mod:`lmgnn_dist.tasks`) and the results tables all read
the same row. Adding a task kind: a row here, its :class:`lmgnn_dist.tasks.base.Task` class
and its entry in :data:`lmgnn_dist.tasks.TASKS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class TaskKind:
    """One row of the task table.

    Attributes
    ----------
    kind : the ``task.kind`` value.
    target : ``"ntype"`` (targets are nodes of ``task.target_ntype``) or ``"etype"``
        (edges of ``task.target_etype``).
    needed_columns : columns the target's Parquet table must have.
    metrics : the scalar metrics the task reports, in table order.
    primary : the default validation metric that selects models (``task.eval_metric``
        overrides it with another of ``metrics``).
    classes : whether the task predicts classes (per-class F1 in the task table).
    """

    kind: str
    target: str
    needed_columns: Tuple[str, ...]
    metrics: Tuple[str, ...]
    primary: str
    classes: bool

    @property
    def target_key(self) -> str:
        """The config key naming the target: ``target_ntype`` or ``target_etype``."""
        return f"target_{self.target}"


#: ``task.kind`` -> its row, in the order the kinds are documented
TASK_KINDS: Dict[str, TaskKind] = {t.kind: t for t in (
    TaskKind("node_classification", "ntype", ("label", "split"), ("acc", "macro_f1"),
             "acc", True),
    TaskKind("edge_classification", "etype", ("label", "split"), ("macro_f1", "acc"),
             "macro_f1", True),
    TaskKind("link_prediction", "etype", ("split",), ("mrr", "hits@1", "hits@10"),
             "mrr", False),
)}


def task_kind(kind: str) -> TaskKind:
    """The row of ``kind``; ValueError naming the known kinds otherwise."""
    if kind not in TASK_KINDS:
        raise ValueError(f"task kind {kind!r} is not one of {sorted(TASK_KINDS)}")
    return TASK_KINDS[kind]


def metric_info(kind: str, eval_metric=None) -> Tuple[str, Tuple[str, ...]]:
    """``(primary, metrics)`` of task ``kind``: the validation metric that selects models
    (``eval_metric`` when given, else the kind's default) and the scalar metrics shown in
    tables. ValueError for an unknown kind."""
    row = task_kind(kind)
    return eval_metric or row.primary, row.metrics
