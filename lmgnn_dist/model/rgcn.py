"""Relational GCN with a self-loop term, LM-GNN eq. (1), over DGL blocks (MFGs)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn

from partition.etypes import CanonicalEtype

from ..device import to_device


class RGCNLayer(nn.Module):
    r"""One RGCN layer (LM-GNN eq. 1; Schlichtkrull et al. 2018)

    .. math::
        h_i^{(l+1)} = \sigma\Big(\sum_{r \in R} \sum_{j \in N_i^r} \frac{1}{c_{i,r}}
                      W_r^{(l)} h_j^{(l)} + W_0^{(l)} h_i^{(l)} + b^{(l)}\Big),
        \qquad c_{i,r} = |N_i^r|

    Per-relation messages use ``dgl.nn.GraphConv(norm="right")`` (mean over the in-neighbours
    of relation ``r``, in the block: the sampled ones) inside ``dgl.nn.HeteroGraphConv`` with
    ``sum`` over relations; :math:`W_0` is the separate self-loop weight, shared by all node
    types. Relations are keyed by canonical etype, so two relations with the same etype name
    between different types stay distinct.

    Parameters
    ----------
    in_dim, out_dim : feature widths.
    canonical_etypes : relations of the graph.
    activation : :math:`\sigma` (``None`` for the last layer, whose output feeds a decoder).
    dropout : applied to the layer output.

    Shapes
    ------
    - input: a block with ``N_src``/``N_dst`` nodes per type; ``h`` dict ntype ->
      float ``[N_src[ntype], in_dim]``.
    - output: dict ntype -> float ``[N_dst[ntype], out_dim]`` for every type with dst nodes,
      on the layer's device (the block and ``h`` are moved there first:
      :func:`~lmgnn_dist.device.to_device`).
    """

    def __init__(self, in_dim: int, out_dim: int, canonical_etypes: Sequence[CanonicalEtype],
                 activation=torch.relu, dropout: float = 0.0):
        super().__init__()
        import dgl.nn as dglnn

        self.canonical_etypes = [tuple(c) for c in canonical_etypes]
        self.conv = dglnn.HeteroGraphConv(
            {c: dglnn.GraphConv(in_dim, out_dim, norm="right", weight=True, bias=False,
                                allow_zero_in_degree=True) for c in self.canonical_etypes},
            aggregate="sum")
        self.self_loop = nn.Linear(in_dim, out_dim, bias=True)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)

    def relation_conv(self, cetype: CanonicalEtype) -> nn.Module:
        """The ``GraphConv`` of relation ``cetype`` (its ``weight`` is :math:`W_r`, applied as ``h @ W``)."""
        return self.conv.mods[str(tuple(cetype))]

    def forward(self, block, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        block, h = to_device(self.self_loop.weight.device, block, h)
        h_dst = {nt: x[:block.num_dst_nodes(nt)] for nt, x in h.items()
                 if block.num_dst_nodes(nt) > 0}
        msgs = self.conv(block, (h, h_dst))
        out = {}
        for nt, x in h_dst.items():
            y = self.self_loop(x)
            if nt in msgs:
                y = y + msgs[nt]
            if self.activation is not None:
                y = self.activation(y)
            out[nt] = self.dropout(y)
        return out


class RGCN(nn.Module):
    """Stack of :class:`RGCNLayer` (``num_layers`` of them, ReLU between, none at the end).

    Shapes
    ------
    - input: ``blocks`` (one per layer, input layer first, as DGL samplers return them) and
      ``h`` dict ntype -> float ``[N_input[ntype], in_dim]`` (the LM embeddings).
    - output: dict ntype -> float ``[N_seeds[ntype], hidden_dim]``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int,
                 canonical_etypes: Sequence[CanonicalEtype], dropout: float = 0.0):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_dropout = nn.Dropout(dropout)
        dims = [in_dim] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList([
            RGCNLayer(dims[i], dims[i + 1], canonical_etypes,
                      activation=torch.relu if i < num_layers - 1 else None,
                      dropout=dropout if i < num_layers - 1 else 0.0)
            for i in range(num_layers)])
        self.out_dim = hidden_dim

    def forward(self, blocks: List, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if len(blocks) != len(self.layers):
            raise ValueError(f"got {len(blocks)} blocks for {len(self.layers)} RGCN layers")
        h = {nt: self.input_dropout(x) for nt, x in h.items()}
        for layer, block in zip(self.layers, blocks):
            h = layer(block, h)
        return h
