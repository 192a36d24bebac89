"""The edge tasks on ``task.target_etype``: edge classification (LM-GNN eq. 3) and link
prediction (DistMult, eq. 2, against held-out edges' fixed filtered negatives)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from partition.etypes import parse_etype_name

from ..data.dataloading import EdgeBatch, edge_batch
from .metrics import HITS_AT, classification_metrics, confusion_matrix, ranking_metrics, ranking_sums
from ..model.decoders import DistMultDecoder, EdgeClassifier, logistic_loss
from ..data.sampling import NEGATIVE_SAMPLERS
from ..dist_init import all_reduce
from .base import Task, parse_etype


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
        return edge_batch(self.g, self.etype, eids, fanouts, generator=generator, **kw)

    def train_batches(self, fanouts, batch_size, generator, pseudo=None):
        if pseudo is not None:
            raise ValueError("stage3.pseudo_label_weight > 0 needs task.kind="
                             "node_classification")
        return self._edge_batches(self.split_targets("train"), fanouts, batch_size, generator)

    def targets_in(self, batch: EdgeBatch) -> int:
        return len(batch.eids)

    def end_points(self, h, batch: EdgeBatch) -> Tuple[torch.Tensor, torch.Tensor]:
        return h[self.etype[0]][batch.src_pos], h[self.etype[2]][batch.dst_pos]


class EdgeClassificationTask(_EdgeTask):
    """Classify ``task.target_etype`` edges with LM-GNN eq. (3) (per-class F1, macro-F1)."""

    kind = "edge_classification"

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
        logits = decoder(*self.end_points(h, batch))
        return F.cross_entropy(logits, self.labels(batch).to(logits.device))

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors,
                 keep_predictions=False):  # per-node predictions: node classification
        conf = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        for b in self._edge_batches(self.split_targets(split), fanouts, batch_size, None,
                                    shuffle=False, full_neighbors=full_neighbors):
            h = head.encoder(b.blocks, features(b.input_nodes))
            pred = head.decoder(*self.end_points(h, b)).argmax(1).cpu()
            conf += confusion_matrix(pred, self.labels(b), len(self.classes))
        return classification_metrics(all_reduce(conf), self.classes)


class LinkPredictionTask(_EdgeTask):
    """Predict ``task.target_etype`` edges: DistMult + logistic loss (eq. 2) with joint or
    uniform negatives; MRR and Hits@{1,10} of each held-out edge against its
    ``eval_negatives`` fixed filtered negatives."""

    kind = "link_prediction"

    def __init__(self, cfg, g, meta):
        super().__init__(cfg, g, meta)
        holdout = meta.get("holdout", {}).get(self.etype_name)
        if holdout is None:
            raise ValueError(f"the partitions in {cfg.data.part_dir} were made without holding "
                             f"out {self.etype_name}'s val/test edges; repartition with "
                             f"holdout_etypes=[{self.etype_name!r}]")
        rev = holdout["reverse"]
        self.reverse = parse_etype_name(rev) if rev else None
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
                          negatives=(neg.neg_nodes, neg.pair_index), exclude=exclude,
                          generator=generator, **kw)

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
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors,
                 keep_predictions=False):  # per-node predictions: node classification
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
            sums += ranking_sums(pos.cpu(), negs.cpu(), valid)
        return ranking_metrics(all_reduce(sums))
