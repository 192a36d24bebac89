"""The three LM-GNN tasks as pluggable heads of one stage runner.

A :class:`Task` knows its training targets (nodes or edges), how to batch them with DGL's
samplers, its decoder and loss, and its evaluation:

==========================  ====================  ===========================  =================
task (``task.kind``)        targets               decoder / loss               metrics
==========================  ====================  ===========================  =================
``node_classification``     ``target_ntype``      linear, cross-entropy        accuracy, macro-F1
                            nodes with a label
``edge_classification``     ``target_etype``      ``W_ec [h_u || h_v]`` (eq. 3) per-class F1,
                            edges with a label    cross-entropy                macro-F1, accuracy
``link_prediction``         ``target_etype``      DistMult, logistic loss      MRR, Hits@1, @10
                            edges                 (eq. 2), joint / uniform     vs. fixed filtered
                                                  negatives                    negatives
==========================  ====================  ===========================  =================

Every batch exposes ``input_nodes`` / ``seeds`` (ntype -> ids) and ``blocks``, so the stage
code (LM encoding, cache, trainable-node choice) is the same for all tasks; the GNN output
``h`` (ntype -> ``[len(seeds[nt]), hidden]``) goes to :meth:`Task.loss` / the evaluation.

Link prediction: the partitioner has removed the target relation's val/test edges and their
reverses from the graph (:mod:`partition.holdout`); during training the batch's own positive
edges and their reverses are also dropped from its blocks (``exclude_training_targets``), so
the model never learns to read an edge off the graph it is asked to predict.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .dataloading import EdgeBatch, edge_batch, node_batches, num_batches
from .metrics import (HITS_AT, classification_metrics, confusion_matrix, ranking_metrics,
                      ranking_sums)
from .model.decoders import DistMultDecoder, EdgeClassifier, NodeClassifier, logistic_loss
from .sampling import NEGATIVE_SAMPLERS

#: ``input_nodes -> h_in`` (ntype -> float ``[N_in, D]``): the GNN's input features
Features = Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


@dataclass
class NodeBatch:
    """A mini-batch of target nodes: ``seeds[target]`` are the nodes to classify, ``labels``
    int64 ``[B]`` their classes."""

    input_nodes: Dict[str, torch.Tensor]
    seeds: Dict[str, torch.Tensor]
    blocks: List
    labels: torch.Tensor


def parse_etype(name: str, g) -> Tuple[str, str, str]:
    """``"question__tagged__tag"`` -> canonical etype of ``g``; ValueError naming the known ones."""
    cetype = tuple(name.split("__"))
    if cetype not in [tuple(c) for c in g.canonical_etypes]:
        known = ["__".join(c) for c in g.canonical_etypes]
        raise ValueError(f"task.target_etype={name!r} is not an edge type of the graph; known: "
                         f"{known}")
    return cetype  # type: ignore[return-value]


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t


class Task:
    """Base class; see the module docstring. Subclasses set ``kind``, ``primary`` (the
    validation metric that selects the best stage-2 epoch) and ``metric_names`` (shown in
    results tables)."""

    kind = ""
    primary = ""
    metric_names: Sequence[str] = ()

    def __init__(self, cfg, g, meta: dict):
        self.cfg, self.g, self.meta = cfg, g, meta
        self._split_cache: Dict[str, object] = {}
        chosen = cfg.task.eval_metric
        if chosen is not None:
            if chosen not in self.metric_names:
                raise ValueError(f"task.eval_metric={chosen!r} is not a metric of {self.kind}; "
                                 f"choose one of {list(self.metric_names)}")
            self.primary = chosen

    # -- what the stage runner calls
    def num_train_targets(self) -> int:
        """This trainer's training targets (nodes or edges)."""
        return len(self.split_targets("train"))

    def num_train_batches(self, batch_size: int) -> int:
        return num_batches(self.num_train_targets(), batch_size)

    def train_batches(self, fanouts: Sequence[int], batch_size: int,
                      generator: torch.Generator) -> Iterator:
        raise NotImplementedError

    def targets_in(self, batch) -> int:
        """Training targets in ``batch`` (for per-epoch accounting)."""
        raise NotImplementedError

    def new_decoder(self, hidden: int) -> nn.Module:
        raise NotImplementedError

    def loss(self, decoder: nn.Module, h: Dict[str, torch.Tensor], batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, head: nn.Module, features: Features, split: str, fanouts: Sequence[int],
                 batch_size: int, full_neighbors: bool) -> Dict[str, object]:
        raise NotImplementedError

    def split_targets(self, split: str):
        raise NotImplementedError

    def _cached_split(self, split: str, compute) -> torch.Tensor:
        """``compute()`` once per split: a ``node_split``/``edge_split`` reads the whole mask
        from the KV store."""
        if split not in self._split_cache:
            self._split_cache[split] = compute()
        return self._split_cache[split]


class NodeClassificationTask(Task):
    """Classify ``task.target_ntype`` nodes (cross-entropy; accuracy and macro-F1)."""

    kind, primary, metric_names = "node_classification", "acc", ("acc", "macro_f1")

    def __init__(self, cfg, g, meta):
        super().__init__(cfg, g, meta)
        self.target = cfg.task.target_ntype
        if self.target not in g.ntypes:
            raise ValueError(f"task.target_ntype={self.target!r} is not a node type of the "
                             f"graph: {g.ntypes}")
        self.classes = meta["ntypes"][self.target]["classes"]
        if not self.classes:
            raise ValueError(f"node type {self.target!r} has no labels for node classification")
        if not meta["ntypes"][self.target].get("has_split"):
            raise ValueError(f"node type {self.target!r} has no 'split' column: node "
                             "classification needs train/val/test nodes")

    def split_targets(self, split: str) -> torch.Tensor:
        """This trainer's share of the target type's ``split`` nodes (DGL ``node_split``)."""
        import dgl

        return self._cached_split(split, lambda: dgl.distributed.node_split(
            self.g.nodes[self.target].data[f"{split}_mask"], self.g.get_partition_book(),
            ntype=self.target, force_even=True))

    def _batches(self, ids, fanouts, batch_size, shuffle, full_neighbors=False):
        labels = self.g.nodes[self.target].data["label"]
        for inp, seeds, blocks in node_batches(self.g, {self.target: ids}, fanouts, batch_size,
                                               shuffle=shuffle, full_neighbors=full_neighbors):
            yield NodeBatch(inp, seeds, blocks, labels[seeds[self.target]])

    def train_batches(self, fanouts, batch_size, generator):
        return self._batches(self.split_targets("train"), fanouts, batch_size, shuffle=True)

    def targets_in(self, batch: NodeBatch) -> int:
        return len(batch.labels)

    def new_decoder(self, hidden: int) -> nn.Module:
        return NodeClassifier(hidden, len(self.classes))

    def logits(self, decoder, h, batch: NodeBatch) -> torch.Tensor:
        return decoder(h[self.target][:len(batch.labels)])

    def loss(self, decoder, h, batch: NodeBatch) -> torch.Tensor:
        return F.cross_entropy(self.logits(decoder, h, batch), batch.labels)

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors):
        conf = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        for b in self._batches(self.split_targets(split), fanouts, batch_size, shuffle=False,
                               full_neighbors=full_neighbors):
            pred = self.logits(head.decoder, head.encoder(b.blocks, features(b.input_nodes)),
                               b).argmax(1)
            conf += confusion_matrix(pred, b.labels, len(self.classes))
        return classification_metrics(_all_reduce(conf), self.classes)


class _EdgeTask(Task):
    """Shared part of the edge tasks: the target relation and its local train/val/test edges."""

    def __init__(self, cfg, g, meta):
        super().__init__(cfg, g, meta)
        if not cfg.task.target_etype:
            raise ValueError(f"task.kind={self.kind} needs task.target_etype (src__etype__dst)")
        self.etype = parse_etype(cfg.task.target_etype, g)
        self.etype_name = cfg.task.target_etype
        self.info = meta["canonical_etypes"][self.etype_name]

    def split_targets(self, split: str) -> torch.Tensor:
        """This trainer's share of the target relation's ``split`` edges (DGL ``edge_split``)."""
        import dgl

        return self._cached_split(split, lambda: dgl.distributed.edge_split(
            self.g.edges[self.etype].data[f"{split}_mask"], self.g.get_partition_book(),
            etype=self.etype, force_even=True))

    def _edge_batches(self, eids, fanouts, batch_size, generator, shuffle=True, **kw):
        if shuffle:
            eids = eids[torch.randperm(len(eids), generator=generator)]
        for start in range(0, len(eids), batch_size):
            yield self._make_batch(eids[start:start + batch_size], fanouts, generator, **kw)

    def _make_batch(self, eids, fanouts, generator, **kw) -> EdgeBatch:
        return edge_batch(self.g, self.etype, eids, fanouts, **kw)

    def train_batches(self, fanouts, batch_size, generator):
        return self._edge_batches(self.split_targets("train"), fanouts, batch_size, generator)

    def targets_in(self, batch: EdgeBatch) -> int:
        return len(batch.eids)

    def end_points(self, h, batch: EdgeBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        return h[self.etype[0]][batch.src_pos], h[self.etype[2]][batch.dst_pos]


class EdgeClassificationTask(_EdgeTask):
    """Classify ``task.target_etype`` edges with LM-GNN eq. (3) (per-class F1, macro-F1)."""

    kind, primary, metric_names = "edge_classification", "macro_f1", ("macro_f1", "acc")

    def __init__(self, cfg, g, meta):
        super().__init__(cfg, g, meta)
        self.classes = self.info["classes"]
        if not self.classes:
            raise ValueError(f"edges/{self.etype_name}.parquet has no 'label' column for edge "
                             "classification")
        if not self.info.get("has_split"):
            raise ValueError(f"edges/{self.etype_name}.parquet has no 'split' column: edge "
                             "classification needs train/val/test edges")

    def new_decoder(self, hidden: int) -> nn.Module:
        return EdgeClassifier(hidden, len(self.classes))

    def labels(self, batch: EdgeBatch) -> torch.Tensor:
        return self.g.edges[self.etype].data["label"][batch.eids]

    def loss(self, decoder, h, batch: EdgeBatch) -> torch.Tensor:
        return F.cross_entropy(decoder(*self.end_points(h, batch)), self.labels(batch))

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors):
        conf = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        for b in self._edge_batches(self.split_targets(split), fanouts, batch_size, None,
                                    shuffle=False, full_neighbors=full_neighbors):
            h = head.encoder(b.blocks, features(b.input_nodes))
            pred = head.decoder(*self.end_points(h, b)).argmax(1)
            conf += confusion_matrix(pred, self.labels(b), len(self.classes))
        return classification_metrics(_all_reduce(conf), self.classes)


class LinkPredictionTask(_EdgeTask):
    """Predict ``task.target_etype`` edges: DistMult + logistic loss (eq. 2) with joint or
    uniform negatives; MRR and Hits@{1,10} of each held-out edge against its
    ``eval_negatives`` fixed filtered negatives."""

    kind, primary, metric_names = "link_prediction", "mrr", ("mrr", "hits@1", "hits@10")

    def __init__(self, cfg, g, meta):
        super().__init__(cfg, g, meta)
        holdout = meta.get("holdout", {}).get(self.etype_name)
        if holdout is None:
            raise ValueError(f"the partitions in {cfg.data.part_dir} were made without holding "
                             f"out {self.etype_name}'s val/test edges; repartition with "
                             f"holdout_etypes=[{self.etype_name!r}]")
        rev = holdout["reverse"]
        self.reverse = tuple(rev.split("__")) if rev else None
        self.sample_negatives = NEGATIVE_SAMPLERS[cfg.task.negative_sampler]
        self._held: Optional[Dict[str, torch.Tensor]] = None

    def split_targets(self, split: str) -> torch.Tensor:
        if split != "train":
            raise ValueError("link prediction evaluates held-out edges, not graph edges")
        return super().split_targets(split)

    def _make_batch(self, eids, fanouts, generator, **kw) -> EdgeBatch:
        t = self.cfg.task
        # joint sampling pairs each positive with k of the batch's n shared negatives: k <= n
        k = min(t.num_negatives, len(eids)) if t.negative_sampler == "joint" else t.num_negatives
        neg = self.sample_negatives(len(eids), k, self.g.num_nodes(self.etype[2]),
                                    generator=generator)
        exclude = self.reverse or self.etype if t.exclude_training_targets else None
        return edge_batch(self.g, self.etype, eids, fanouts,
                          negatives=(neg.neg_nodes, neg.pair_index), exclude=exclude, **kw)

    def new_decoder(self, hidden: int) -> nn.Module:
        return DistMultDecoder([self.etype], hidden)

    def scores(self, decoder, h, batch: EdgeBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        """Positive scores ``[B]`` and negative scores ``[B, k]``."""
        h_src, h_dst = self.end_points(h, batch)
        h_neg = h[self.etype[2]][batch.neg_pos]
        return (decoder(h_src, h_dst, self.etype),
                decoder.score_negatives(h_src, h_neg, self.etype))

    def loss(self, decoder, h, batch: EdgeBatch) -> torch.Tensor:
        return logistic_loss(*self.scores(decoder, h, batch))

    def held_out(self, split: str) -> Dict[str, torch.Tensor]:
        """This trainer's contiguous share of the held-out ``split`` edges:
        ``{"src", "dst": [E], "neg": [E, K]}`` (``-1`` = padding)."""
        from partition.build import load_holdout

        if self._held is None:
            self._held = {k: torch.from_numpy(v) for k, v in
                          load_holdout(self.cfg.data.part_dir, self.etype_name).items()}
        n = len(self._held[f"{split}_src"])
        rank, world = dist.get_rank(), dist.get_world_size()
        lo, hi = n * rank // world, n * (rank + 1) // world
        return {k: self._held[f"{split}_{k}"][lo:hi] for k in ("src", "dst", "neg")}

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors):
        held = self.held_out(split)
        sums = torch.zeros(2 + len(HITS_AT), dtype=torch.float64)
        for start in range(0, len(held["src"]), batch_size):
            src, dst, neg = (held[k][start:start + batch_size] for k in ("src", "dst", "neg"))
            valid = neg >= 0
            neg = torch.where(valid, neg, dst.unsqueeze(1))  # padding: any real node, masked
            b = edge_batch(self.g, self.etype, torch.arange(len(src)), fanouts,
                           negatives=(neg.reshape(-1), torch.arange(neg.numel()).view(neg.shape)),
                           full_neighbors=full_neighbors, src_dst=(src, dst))
            pos, negs = self.scores(head.decoder, head.encoder(b.blocks, features(b.input_nodes)), b)
            sums += ranking_sums(pos, negs, valid)
        return ranking_metrics(_all_reduce(sums))


TASKS = {t.kind: t for t in (NodeClassificationTask, EdgeClassificationTask, LinkPredictionTask)}


def metric_info(task_cfg) -> Tuple[str, Sequence[str]]:
    """``(primary, metric_names)`` of ``task_cfg.kind``: the validation metric that selects
    models (``task.eval_metric`` or the kind's default) and the scalar metrics shown in
    tables. Needs no graph (the drivers' results tables)."""
    cls = TASKS[task_cfg.kind]
    return task_cfg.eval_metric or cls.primary, cls.metric_names


def make_task(cfg, g, meta: dict) -> Task:
    """The :class:`Task` of ``cfg.task.kind`` (validated against the graph; ValueError
    naming what is missing)."""
    return TASKS[cfg.task.kind](cfg, g, meta)
