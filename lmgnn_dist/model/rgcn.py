"""Relational GCN with a self-loop term, LM-GNN eq. (1), over DGL blocks (MFGs)."""
from __future__ import annotations

from typing import Sequence

import torch

from partition.etypes import CanonicalEtype

from .gnn import GNNEncoder, SelfLoopLayer, stacked_layers


class RGCNLayer(SelfLoopLayer):
    r"""One RGCN layer (LM-GNN eq. 1; Schlichtkrull et al. 2018)

    .. math::
        h_i^{(l+1)} = \sigma\Big(\sum_{r \in R} \sum_{j \in N_i^r} \frac{1}{c_{i,r}}
                      W_r^{(l)} h_j^{(l)} + W_0^{(l)} h_i^{(l)} + b^{(l)}\Big),
        \qquad c_{i,r} = |N_i^r|

    Per-relation messages use ``dgl.nn.GraphConv(norm="right")`` (mean over the in-neighbours
    of relation ``r``, in the block: the sampled ones) inside ``dgl.nn.HeteroGraphConv`` with
    ``sum`` over relations; :math:`W_0` is the separate self-loop weight, shared by all node
    types (:class:`~lmgnn_dist.model.gnn.SelfLoopLayer`). Relations are keyed by canonical
    etype, so two relations with the same etype name between different types stay distinct.

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
        import dgl.nn as dglnn

        cetypes = [tuple(c) for c in canonical_etypes]
        conv = dglnn.HeteroGraphConv(
            {c: dglnn.GraphConv(in_dim, out_dim, norm="right", weight=True, bias=False,
                                allow_zero_in_degree=True) for c in cetypes},
            aggregate="sum")
        super().__init__(conv, in_dim, out_dim, activation, dropout)
        self.canonical_etypes = cetypes

    def relation_conv(self, cetype: CanonicalEtype):
        """The ``GraphConv`` of relation ``cetype`` (its ``weight`` is :math:`W_r`, applied as ``h @ W``)."""
        return super().relation_conv(cetype)


class RGCN(GNNEncoder):
    """Stack of :class:`RGCNLayer` (``num_layers`` of them, ReLU between, none at the end);
    shapes as :class:`~.gnn.GNNEncoder`'s, output width ``hidden_dim``. Raises ValueError
    if ``num_layers < 1``, or (forward) the number of blocks is not ``num_layers``."""

    def __init__(self, in_dim: int, hidden_dim: int, num_layers: int,
                 canonical_etypes: Sequence[CanonicalEtype], dropout: float = 0.0):
        super().__init__(stacked_layers(
            lambda i, o, act, drop: RGCNLayer(i, o, canonical_etypes, act, drop),
            in_dim, hidden_dim, num_layers, dropout), dropout)

    @classmethod
    def from_config(cls, model_cfg, in_dim: int, canonical_etypes) -> "RGCN":
        """``model.hidden_size`` / ``num_layers`` / ``dropout`` of ``model_cfg``."""
        m = model_cfg
        return cls(in_dim, m.hidden_size, m.num_layers, canonical_etypes, m.dropout)
