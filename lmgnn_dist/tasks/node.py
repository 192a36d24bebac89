"""Node classification: ``task.target_ntype`` nodes with a label (cross-entropy; accuracy,
macro-F1, per-class F1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.dataloading import node_batches, sample_blocks
from .metrics import classification_metrics, confusion_matrix
from ..model.decoders import NodeClassifier
from ..dist_init import all_gather_objects, all_reduce
from .base import NodeBatch, Task


class NodeClassificationTask(Task):
    """Classify ``task.target_ntype`` nodes (cross-entropy; accuracy and macro-F1)."""

    kind = "node_classification"

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

    def unlabelled_targets(self) -> torch.Tensor:
        """This trainer's share of the target nodes in neither the training nor the
        validation split (test and unlabelled ones): what pseudo-labels may cover.
        Validation nodes stay out (issue 22): every kept model is selected on them, and a
        model trained toward its teacher's predictions there would be selected for agreeing
        with the teacher."""
        import dgl

        def pool():
            ids = torch.arange(self.g.num_nodes(self.target))
            data = self.g.nodes[self.target].data
            return dgl.distributed.node_split(
                ~(data["train_mask"][ids].bool() | data["val_mask"][ids].bool()),
                self.g.get_partition_book(), ntype=self.target, force_even=True)
        return self._cached_split("not_train_val", pool)

    def _batches(self, ids, fanouts, batch_size, shuffle, full_neighbors=False,
                 generator=None):
        labels = self.g.nodes[self.target].data["label"]
        for inp, seeds, blocks in node_batches(self.g, {self.target: ids}, fanouts, batch_size,
                                               shuffle=shuffle, full_neighbors=full_neighbors,
                                               generator=generator):
            yield NodeBatch(inp, seeds, blocks, labels[seeds[self.target]])

    def train_batches(self, fanouts, batch_size, generator, pseudo=None):
        if pseudo is None:
            return self._batches(self.split_targets("train"), fanouts, batch_size, shuffle=True,
                                 generator=generator)
        return self._pseudo_batches(fanouts, batch_size, generator, pseudo)

    def _pseudo_batches(self, fanouts, batch_size, generator, pseudo):
        """Shuffled training targets, ``batch_size`` a batch, each joined by
        ``pseudo.per_batch(n)`` pseudo-labelled targets (weight ``pseudo.weight``)."""
        train, labels = self.split_targets("train"), self.g.nodes[self.target].data["label"]
        train = train[torch.randperm(len(train), generator=generator)]
        for start in range(0, len(train), batch_size):
            gold = train[start:start + batch_size]
            ids, plabels = pseudo.draw(pseudo.per_batch(len(gold)), generator)
            inp, seeds, blocks = sample_blocks(self.g, {self.target: torch.cat([gold, ids])},
                                               fanouts, generator=generator)
            weights = torch.cat([torch.ones(len(gold)), torch.full((len(ids),), pseudo.weight)])
            yield NodeBatch(inp, seeds, blocks, torch.cat([labels[gold], plabels]), weights,
                            len(ids))

    def targets_in(self, batch: NodeBatch) -> int:
        return len(batch.labels) - batch.num_pseudo

    def new_decoder(self, hidden: int) -> nn.Module:
        return NodeClassifier(hidden, len(self.classes))

    def logits(self, decoder, h, batch: NodeBatch) -> torch.Tensor:
        return decoder(h[self.target][:len(batch.labels)])

    def loss(self, decoder, h, batch: NodeBatch, label_smoothing: float = 0.0) -> torch.Tensor:
        """Cross-entropy over the batch's targets; with ``weights``, their weighted mean
        ``sum(w_i * CE_i) / sum(w_i)``. ``label_smoothing`` ``eps`` in ``[0, 1)``: each target
        distribution is ``(1 - eps)`` on the label + ``eps / C`` on every class (Szegedy et
        al., 2016, sec. 7; ``F.cross_entropy``'s ``label_smoothing``)."""
        logits = self.logits(decoder, h, batch)
        labels = batch.labels.to(logits.device)
        if batch.weights is None:
            return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        w = batch.weights.to(logits.device)
        ce = F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
        return (w * ce).sum() / w.sum()

    def _predicted(self, head, features, ids, fanouts, batch_size, full_neighbors):
        for b in self._batches(ids, fanouts, batch_size, shuffle=False,
                               full_neighbors=full_neighbors):
            yield b, self.logits(head.decoder, head.encoder(b.blocks, features(b.input_nodes)),
                                 b).float().cpu()

    @torch.no_grad()
    def predict(self, head, features, ids, fanouts, batch_size, full_neighbors=True):
        """Class probabilities of ``ids`` (int64 ``[N]``, this trainer's): float32
        ``[N, num_classes]``, rows in ``ids``' order. Not collective."""
        out = [torch.softmax(logits, 1) for _, logits in
               self._predicted(head, features, ids, fanouts, batch_size, full_neighbors)]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))

    @torch.no_grad()
    def evaluate(self, head, features, split, fanouts, batch_size, full_neighbors,
                 keep_predictions=False):
        """Accuracy, macro-F1, per-class F1 and support of ``split`` over all trainers
        (collective). With ``keep_predictions`` also ``predictions``: every trainer's
        predictions of the split gathered (:func:`gathered_predictions`)."""
        conf = torch.zeros(len(self.classes), len(self.classes), dtype=torch.int64)
        kept = []
        for b, logits in self._predicted(head, features, self.split_targets(split), fanouts,
                                         batch_size, full_neighbors):
            pred = logits.argmax(1)
            conf += confusion_matrix(pred, b.labels, len(self.classes))
            if keep_predictions:
                kept.append(torch.stack([self.node_ids(b.seeds[self.target]), pred,
                                         b.labels.long()]))
        out = classification_metrics(all_reduce(conf), self.classes)
        if keep_predictions:
            mine = torch.cat(kept, 1) if kept else torch.zeros(3, 0, dtype=torch.int64)
            out["predictions"] = gathered_predictions(all_gather_objects(mine.numpy()))
        return out

    def node_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The TAG's ids (``orig_id``, int64) of target nodes ``ids`` (the graph's ids; a
        graph without ``orig_id``, such as a test's in-memory graph, keeps its own)."""
        data = self.g.nodes[self.target].data
        return data["orig_id"][ids].long() if "orig_id" in data.keys() else ids.long()


def gathered_predictions(parts) -> dict:
    """One split's predictions from every trainer's ``int64 [3, n_r]`` rows (node id,
    predicted class, true class) as int64 numpy ``node_id``, ``pred``, ``label`` ``[N]``
    sorted by node id (``N = sum n_r``; the same split of two runs then aligns row by row)."""
    import numpy as np

    rows = np.concatenate([np.asarray(p, dtype=np.int64).reshape(3, -1) for p in parts], 1)
    order = np.argsort(rows[0], kind="stable")
    return {"node_id": rows[0][order], "pred": rows[1][order], "label": rows[2][order]}
