"""Models of the three stages, each one ``nn.Module`` so ``DistributedDataParallel`` wraps it.

- :class:`LMLinkPredictor` (stage 1): LM [CLS] -> DistMult -> logistic loss (eq. 2).
- :class:`GNNNodeClassifier` (stage 2): fixed LM embeddings -> RGCN (eq. 1) -> classifier.
- :class:`JointNodeClassifier` (stage 3): LM with back-prop on a node subset -> RGCN -> classifier.
"""
from __future__ import annotations

import time
from typing import Dict, List, Tuple

import torch
from torch import nn

from .decoders import DistMultDecoder, NodeClassifier, logistic_loss
from .lm import LMEncoder
from .rgcn import RGCN


def mix_embeddings(h_train: torch.Tensor, train_idx: torch.Tensor,
                   h_infer: torch.Tensor, infer_idx: torch.Tensor) -> torch.Tensor:
    """Assemble input-node embeddings from with-grad and no-grad parts (back-prop on samples).

    Shapes: ``h_train`` ``[T, D]`` at positions ``train_idx`` ``[T]``, ``h_infer`` ``[I, D]`` at
    ``infer_idx`` ``[I]`` -> ``[T + I, D]``. Gradient flows only into ``h_train``.
    """
    n = len(train_idx) + len(infer_idx)
    out = torch.zeros(n, h_train.shape[1], dtype=h_train.dtype)
    out = out.index_put((infer_idx,), h_infer.detach().to(h_train.dtype))
    return out.index_put((train_idx,), h_train)


class LMLinkPredictor(nn.Module):
    """Stage 1: graph-aware LM pre-fine-tuning on link prediction (LM-GNN §3.1).

    ``forward(tokens, src_pos, dst_pos, neg_pos, cetype)``:

    - ``tokens``: int ``[U, L]`` token ids of the batch's unique end points (``U <= 3n``).
    - ``src_pos``, ``dst_pos``: int64 ``[n]`` rows of ``tokens`` of each positive edge.
    - ``neg_pos``: int64 ``[n, k]`` rows of the negatives of each positive (joint sampling).
    - returns the scalar logistic loss (eq. 2) and the embeddings ``[U, D]`` (for caching).
    """

    def __init__(self, lm: LMEncoder, canonical_etypes):
        super().__init__()
        self.lm = lm
        self.decoder = DistMultDecoder(canonical_etypes, lm.out_dim)

    def forward(self, tokens, src_pos, dst_pos, neg_pos, cetype) -> Tuple[torch.Tensor, torch.Tensor]:
        h = self.lm(tokens)
        pos = self.decoder(h[src_pos], h[dst_pos], cetype)
        neg = self.decoder.score_negatives(h[src_pos], h[neg_pos], cetype)
        return logistic_loss(pos, neg), h


class GNNNodeClassifier(nn.Module):
    """Stage 2 (and the frozen-LM baseline): RGCN + linear classifier on fixed embeddings.

    ``forward(blocks, h)`` with ``h`` ntype -> ``[N_in, D]`` returns logits ``[B, C]`` of the
    target type's seeds.
    """

    def __init__(self, in_dim: int, hidden: int, num_layers: int, canonical_etypes,
                 num_classes: int, target_ntype: str, dropout: float):
        super().__init__()
        self.gnn = RGCN(in_dim, hidden, num_layers, canonical_etypes, dropout)
        self.classifier = NodeClassifier(hidden, num_classes)
        self.target_ntype = target_ntype

    def forward(self, blocks: List, h: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.gnn(blocks, h)[self.target_ntype])


class MLPNodeClassifier(nn.Module):
    """LM-only baseline head: a 2-layer MLP on each target's own embedding, no message passing.

    Same interface as :class:`GNNNodeClassifier`: ``forward(blocks, h)`` returns logits
    ``[B, C]`` for the destination nodes of ``blocks[-1]`` (the seeds), reading only their rows
    of ``h[target_ntype]`` (seeds come first among a block's source nodes).
    """

    def __init__(self, in_dim: int, hidden: int, num_classes: int, target_ntype: str,
                 dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, num_classes))
        self.target_ntype = target_ntype

    def forward(self, blocks: List, h: Dict[str, torch.Tensor]) -> torch.Tensor:
        n = blocks[-1].num_dst_nodes(self.target_ntype)
        return self.mlp(h[self.target_ntype][:n])


class JointNodeClassifier(nn.Module):
    """Stage 3: LM + RGCN + classifier trained jointly with back-prop on sampled nodes.

    ``forward(blocks, tokens, train_idx, infer_idx, h_infer, h_other)``:

    - ``tokens``: int ``[T, L]`` token ids of the trainable input nodes of the target type.
    - ``train_idx``/``infer_idx``: positions of trainable/inference nodes among the target
      type's input nodes; ``h_infer`` ``[I, D]`` their no-grad embeddings (cache or re-encoded).
    - ``h_other``: ntype -> ``[N_in, D]`` no-grad embeddings of the other node types.
    - returns ``(logits [B, C], h_train [T, D])``.
    """

    def __init__(self, lm: LMEncoder, head: GNNNodeClassifier):
        super().__init__()
        self.lm = lm
        self.head = head
        self.timings: Dict[str, float] = {}  # wall seconds of the last forward: "lm", "head"

    def forward(self, blocks, tokens, train_idx, infer_idx, h_infer, h_other):
        t0 = time.perf_counter()
        h_train = self.lm(tokens)
        t1 = time.perf_counter()
        h = dict(h_other)
        h[self.head.target_ntype] = mix_embeddings(h_train, train_idx, h_infer, infer_idx)
        logits = self.head(blocks, h)
        self.timings.update(lm=t1 - t0, head=time.perf_counter() - t1)
        return logits, h_train
