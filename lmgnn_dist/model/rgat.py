"""Relational graph attention (RGAT) with a self-loop term, over DGL blocks (MFGs)."""
from __future__ import annotations

from typing import Dict, Sequence

import torch

from partition.etypes import CanonicalEtype

from .gnn import GNNEncoder, SelfLoopLayer, stacked_layers


class RGATLayer(SelfLoopLayer):
    r"""One RGAT layer: per-relation multi-head GAT messages (Veličković et al. 2018) summed
    over relations (Busbridge et al. 2019, "WIRGAT" with per-relation attention), plus the
    RGCN's self-loop term.

    .. math::
        e_{ij}^{r,k} &= \mathrm{LeakyReLU}_{0.2}\big(a_{r,k}^{\top}
                        [W_{r,k} h_j \,\|\, W_{r,k} h_i]\big), \qquad
        \alpha_{ij}^{r,k} = \frac{\exp e_{ij}^{r,k}}{\sum_{j' \in N_i^r} \exp e_{ij'}^{r,k}}

        h_i^{(l+1)} &= \sigma\Big(\sum_{r \in R} \big\Vert_{k=1}^{K}
                       \sum_{j \in N_i^r} \alpha_{ij}^{r,k} W_{r,k} h_j
                       + W_0 h_i + b\Big)

    Each relation ``r`` has its own ``dgl.nn.GATConv`` (``K = num_heads`` heads of width
    ``out_dim / K``, no bias, ``allow_zero_in_degree=True``) inside ``dgl.nn.HeteroGraphConv``
    with ``sum`` over relations; the heads are concatenated to ``out_dim``. The attention is
    normalised over the in-neighbours of relation ``r`` in the block (the sampled ones); a dst
    node without in-edges of ``r`` gets a zero message from it, so a node with no in-edge at
    all gets only the self-loop term :math:`W_0 h_i + b` (shared by all node types:
    :class:`~lmgnn_dist.model.gnn.SelfLoopLayer`). Relations are keyed by canonical etype.

    Parameters
    ----------
    in_dim, out_dim : feature widths.
    num_heads : attention heads per relation (``K``).
    canonical_etypes : relations of the graph.
    activation : :math:`\sigma` (``None`` for the last layer, whose output feeds a decoder).
    dropout : applied to the layer output.

    Shapes
    ------
    - input: a block with ``N_src``/``N_dst`` nodes per type; ``h`` dict ntype ->
      float ``[N_src[ntype], in_dim]``.
    - per relation: ``GATConv`` returns ``[N_dst, K, out_dim / K]``; attention weights
      (``get_attention=True``) ``[E_r, K, 1]``.
    - output: dict ntype -> float ``[N_dst[ntype], out_dim]`` for every type with dst nodes,
      on the layer's device (:func:`~lmgnn_dist.device.to_device`). Dtype: that of ``h``
      (float32; under autocast, what autocast gives).

    Raises
    ------
    ValueError if ``out_dim`` is not divisible by ``num_heads``.
    """

    def __init__(self, in_dim: int, out_dim: int, num_heads: int,
                 canonical_etypes: Sequence[CanonicalEtype], activation=torch.relu,
                 dropout: float = 0.0):
        import dgl.nn as dglnn

        if num_heads < 1 or out_dim % num_heads:
            raise ValueError(f"out_dim {out_dim} must be divisible by num_heads {num_heads} "
                             "(the heads are concatenated to out_dim)")
        cetypes = [tuple(c) for c in canonical_etypes]
        conv = dglnn.HeteroGraphConv(
            {c: dglnn.GATConv(in_dim, out_dim // num_heads, num_heads, bias=False,
                              allow_zero_in_degree=True) for c in cetypes},
            aggregate="sum")
        super().__init__(conv, in_dim, out_dim, activation, dropout)
        self.canonical_etypes = cetypes
        self.num_heads = num_heads

    def relation_conv(self, cetype: CanonicalEtype):
        """The ``GATConv`` of relation ``cetype`` (``fc`` is :math:`W_{r,\\cdot}`,
        ``attn_l`` / ``attn_r`` the source / destination halves of :math:`a_{r,\\cdot}`)."""
        return super().relation_conv(cetype)

    def messages(self, block, h: Dict[str, torch.Tensor],
                 h_dst: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-relation GAT messages summed over relations, heads concatenated:
        ntype -> ``[N_dst, out_dim]``."""
        return {nt: m.flatten(1) for nt, m in self.conv(block, (h, h_dst)).items()}


class RGAT(GNNEncoder):
    """Stack of :class:`RGATLayer` (``num_layers`` of them, ReLU between, none at the end);
    shapes as :class:`~.gnn.GNNEncoder`'s, output width ``hidden_dim``. Raises ValueError
    if ``num_layers < 1`` or ``hidden_dim`` is not divisible by ``num_heads``, or (forward) the number of blocks is not ``num_layers``."""

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int,
                 canonical_etypes: Sequence[CanonicalEtype], dropout: float = 0.0,
                 num_heads: int = 4):
        super().__init__(stacked_layers(
            lambda i, o, act, drop: RGATLayer(i, o, num_heads, canonical_etypes, act, drop),
            in_dim, hidden_dim, num_layers, dropout), dropout)

    @classmethod
    def from_config(cls, model_cfg, in_dim: int, canonical_etypes) -> "RGAT":
        """``model.hidden_size`` / ``num_layers`` / ``dropout`` / ``num_heads`` of
        ``model_cfg``."""
        m = model_cfg
        return cls(in_dim, m.hidden_size, m.num_layers, canonical_etypes, m.dropout,
                   m.num_heads)
