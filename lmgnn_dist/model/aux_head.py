"""Stage 3's auxiliary LM classifier (issue 22 item 4; ``stage3.lm_aux_weight``).

The joint loss reaches the LM only through the GNN head, mixed with neighbours from older LMs
(the cache). An auxiliary cross-entropy on a linear classifier over the LM's own embedding of
each target node encoded with gradient gives the LM a direct signal from its labels, as GLEM's
LM step and SimTeG's fine-tuning train the LM on the labels alone. Total loss per step:
``L_joint + lm_aux_weight * L_aux`` (mean over the with-grad targets, pseudo-label weights
applied as in the joint loss).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn


class LMAuxHead(nn.Module):
    """A linear classifier ``[D] -> [C]`` over the LM embedding of ``ntype``'s target nodes,
    its cross-entropy scaled by ``weight``.

    :meth:`forward` takes ``h_train`` (ntype -> float ``[T, D]`` with-grad LM embeddings),
    ``train_idx`` (ntype -> int64 ``[T]`` their positions among the batch's input nodes; the
    batch's ``B`` target nodes are input nodes ``0 .. B-1``, DGL's block convention) and the
    :class:`~lmgnn_dist.tasks.base.NodeBatch` (``labels`` ``[B]``, optional ``weights``), and
    returns the scaled loss, a scalar (0 when no target was encoded with gradient)."""

    def __init__(self, ntype: str, dim: int, num_classes: int, weight: float):
        super().__init__()
        self.ntype, self.weight = ntype, float(weight)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, h_train: Dict[str, torch.Tensor], train_idx: Dict[str, torch.Tensor],
                batch) -> torch.Tensor:
        h = h_train.get(self.ntype)
        if h is None or len(h) == 0:  # no LM input of the type: nothing to classify
            return sum(p.sum() for p in self.parameters()) * 0.0  # DDP: every parameter used
        pos = train_idx[self.ntype].to(h.device)
        is_target = pos < len(batch.labels)
        if not bool(is_target.any()):
            return self.linear(h[:1].float()).sum() * 0.0
        logits = self.linear(h[is_target].float())
        labels = batch.labels.to(h.device)[pos[is_target]]
        ce = F.cross_entropy(logits, labels, reduction="none")
        if batch.weights is None:
            return self.weight * ce.mean()
        w = batch.weights.to(h.device)[pos[is_target]]
        return self.weight * (w * ce).sum() / w.sum().clamp_min(1e-12)
