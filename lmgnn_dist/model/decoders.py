"""Task decoders and losses of LM-GNN: node classifier, edge classifier (eq. 3), DistMult +
logistic loss (eq. 2)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from partition.etypes import CanonicalEtype, etype_file_name


#: module-dict key of a canonical etype: ``"src__etype__dst"``
rel_key = etype_file_name


class NodeClassifier(nn.Module):
    """Linear softmax classifier on node embeddings (trained with cross-entropy).

    Shapes: input float ``[B, in_dim]`` -> logits float ``[B, num_classes]``.
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h)


class EdgeClassifier(nn.Module):
    r"""Edge classifier of LM-GNN eq. (3): a linear softmax layer on the concatenated end points.

    .. math:: \hat y_{uv} = \operatorname{softmax}\big(W_{ec}\,[h_u \,\|\, h_v] + b\big)

    Shapes: ``h_src``, ``h_dst`` float ``[B, in_dim]`` -> logits float ``[B, num_classes]``
    (trained with cross-entropy).
    """

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(2 * in_dim, num_classes)

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([h_src, h_dst], dim=-1))


class DistMultDecoder(nn.Module):
    r"""DistMult edge scorer, one diagonal relation matrix per canonical etype (LM-GNN §3).

    .. math:: s(h_i, r, h_j) = h_i^\top \operatorname{diag}(w_r)\, h_j = \sum_d h_{i,d}\, w_{r,d}\, h_{j,d}

    ``w_r`` is initialised to ``1/dim``: an untrained decoder scores by the mean element-wise
    product, O(0.1) for MiniLM [CLS] vectors (whose raw dot products are ~35 for *random*
    pairs and would saturate the sigmoid), so learning starts from uninformative scores.

    Shapes
    ------
    - :meth:`forward`: ``h_src``, ``h_dst`` float ``[B, D]`` -> scores float ``[B]``.
    - :meth:`score_negatives`: ``h_src`` ``[B, D]``, ``h_neg`` ``[B, k, D]`` -> ``[B, k]``.
    """

    def __init__(self, canonical_etypes: Sequence[CanonicalEtype], dim: int):
        super().__init__()
        self.rel = nn.ParameterDict({rel_key(tuple(c)): nn.Parameter(torch.full((dim,), 1.0 / dim))
                                     for c in canonical_etypes})

    def forward(self, h_src: torch.Tensor, h_dst: torch.Tensor, cetype: CanonicalEtype) -> torch.Tensor:
        return (h_src * self.rel[rel_key(cetype)] * h_dst).sum(-1)

    def score_negatives(self, h_src: torch.Tensor, h_neg: torch.Tensor,
                        cetype: CanonicalEtype) -> torch.Tensor:
        return ((h_src * self.rel[rel_key(cetype)]).unsqueeze(1) * h_neg).sum(-1)


def logistic_loss(pos_score: torch.Tensor, neg_score: torch.Tensor) -> torch.Tensor:
    r"""Logistic link-prediction loss, LM-GNN eq. (2), normalised by the number of positives.

    .. math::
        \mathcal{L} = -\frac{1}{|E|}\Big(\sum_{(i,r,j) \in E} \log \sigma(s_{ij})
                      + \sum_{(i,r,j') \in E^-} \log\big(1 - \sigma(s_{ij'})\big)\Big)

    Shapes: ``pos_score`` ``[B]``, ``neg_score`` ``[B, k]`` (or any shape) -> scalar.
    """
    if pos_score.numel() == 0:
        raise ValueError("logistic_loss needs at least one positive score")
    return -(F.logsigmoid(pos_score).sum() + F.logsigmoid(-neg_score).sum()) / pos_score.numel()
