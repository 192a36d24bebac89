"""Node classification: ``task.target_ntype`` nodes with a label (cross-entropy; accuracy,
macro-F1, per-class F1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..dataloading import node_batches
from ..metrics import classification_metrics, confusion_matrix
from ..model.decoders import NodeClassifier
from ..dist_init import all_reduce
from .base import NodeBatch, Task


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
        logits = self.logits(decoder, h, batch)
        return F.cross_entropy(logits, batch.labels.to(logits.device))

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors):
        conf = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        for b in self._batches(self.split_targets(split), fanouts, batch_size, shuffle=False,
                               full_neighbors=full_neighbors):
            pred = self.logits(head.decoder, head.encoder(b.blocks, features(b.input_nodes)),
                               b).argmax(1).cpu()
            conf += confusion_matrix(pred, b.labels, len(self.classes))
        return classification_metrics(all_reduce(conf), self.classes)
