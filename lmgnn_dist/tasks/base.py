"""The task interface: what a trainer asks of its pluggable head (see :mod:`lmgnn_dist.tasks`)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import torch
from torch import nn

from partition.etypes import CanonicalEtype
from partition.etypes import parse_etype as parse_etype_in
from partition.task_kinds import task_kind

from ..data.dataloading import num_batches

#: ``input_nodes -> h_in`` (ntype -> float ``[N_in, D]``): the GNN's input features
Features = Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


@dataclass
class NodeBatch:
    """A mini-batch of target nodes: ``seeds[target]`` are the nodes to classify, ``labels``
    int64 ``[B]`` their classes. With pseudo-labels (stage 3, :mod:`~lmgnn_dist.trainer.
    pseudo_labels`) the last ``num_pseudo`` targets carry a teacher's classes and ``weights``
    float32 ``[B]`` weighs each target's loss (1 for gold labels)."""

    input_nodes: Dict[str, torch.Tensor]
    seeds: Dict[str, torch.Tensor]
    blocks: List
    labels: torch.Tensor
    weights: Optional[torch.Tensor] = None
    num_pseudo: int = 0


def parse_etype(name: str, g) -> CanonicalEtype:
    """``"question__tagged__tag"`` -> canonical etype of ``g``; ValueError naming the known
    ones (config key ``task.target_etype``)."""
    return parse_etype_in(name, g.canonical_etypes, "task.target_etype", "the graph")


class Task:
    """Base class; see the module docstring. Subclasses set ``kind``; its row of the task
    table (:mod:`partition.task_kinds`) gives ``primary`` (the validation metric that
    selects models) and ``metric_names`` (shown in results tables)."""

    kind = ""
    primary = ""
    metric_names: Sequence[str] = ()

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:  # abstract intermediates (no kind) take no row
            row = task_kind(cls.kind)
            cls.primary, cls.metric_names = row.primary, row.metrics

    def __init__(self, cfg, g, meta: dict):
        self.cfg, self.g, self.meta = cfg, g, meta
        self._split_cache: Dict[str, object] = {}
        chosen = cfg.task.eval_metric
        if chosen is not None:
            if chosen not in self.metric_names:
                raise ValueError(f"task.eval_metric={chosen!r} is not a metric of {self.kind}; "
                                 f"choose one of {list(self.metric_names)}")
            self.primary = chosen

    # -- what the stage trainers call
    def num_train_targets(self) -> int:
        """This trainer's training targets (nodes or edges)."""
        return len(self.split_targets("train"))

    def num_train_batches(self, batch_size: int) -> int:
        return num_batches(self.num_train_targets(), batch_size)

    def train_batches(self, fanouts: Sequence[int], batch_size: int,
                      generator: torch.Generator, pseudo=None) -> Iterator:
        """One pass over this trainer's training targets in shuffled mini-batches. Every draw
        (the order, sampled neighbours, negatives, pseudo-labelled targets) comes from
        ``generator``: the same generator state gives the same batches (reproducible runs).
        ``pseudo``: a :class:`~lmgnn_dist.trainer.pseudo_labels.PseudoLabels` whose draws join
        every batch (node classification only)."""
        raise NotImplementedError

    def targets_in(self, batch) -> int:
        """Training targets in ``batch`` (for per-epoch accounting)."""
        raise NotImplementedError

    def new_decoder(self, hidden: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, decoder: nn.Module, h: Dict[str, torch.Tensor], batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, head: nn.Module, features: Features, split: str, fanouts: Sequence[int],
                 batch_size: int, full_neighbors: bool,
                 keep_predictions: bool = False) -> Dict[str, object]:
        """The task's metrics of ``split`` over all trainers (collective). With
        ``keep_predictions``, node classification adds ``predictions`` (every test node's
        predicted and true class, :func:`~.node.gathered_predictions`); the edge tasks
        ignore it."""
        raise NotImplementedError

    def split_targets(self, split: str):
        raise NotImplementedError

    @contextmanager
    def restricted_split(self, split: str, ids: torch.Tensor) -> Iterator[None]:
        """Inside the block this trainer's ``split`` targets are ``ids`` (a subset of its own,
        e.g. the training targets outside a cross-fitting fold): batches, counts and
        evaluation all read them. Restored on exit, also after an exception."""
        before = self.split_targets(split)
        self._split_cache[split] = ids
        try:
            yield
        finally:
            self._split_cache[split] = before

    def _cached_split(self, split: str, compute) -> torch.Tensor:
        """``compute()`` once per split: a ``node_split``/``edge_split`` reads the whole mask
        from the KV store."""
        if split not in self._split_cache:
            self._split_cache[split] = compute()
        return self._split_cache[split]
