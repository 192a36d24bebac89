"""The GNN-encoder seam: what generic code (builders, evaluation, layer-wise inference) may ask
of any encoder of a :class:`~lmgnn_dist.model.joint.TaskModel`.

Every encoder is an ``nn.Module`` with

- ``forward(blocks, h)``: ``h`` ntype -> float ``[N_in, in_dim]`` (the input nodes of
  ``blocks[0]``) -> ntype -> float ``[N_out, out_dim]`` (the output nodes of ``blocks[-1]``);
- ``graph_free`` (bool): True when the encoder ignores the graph (the MLP stand-in: no full
  neighbourhoods needed to evaluate it, no layers to run layer-wise);
- ``out_dim`` (int): the width of its output;
- for message-passing encoders (``graph_free`` False) ``layers``: an ``nn.ModuleList`` whose
  items are callable as ``layer(block, x)`` (one block, ntype -> ``[N_src, layer.in_dim]`` ->
  ntype -> ``[N_dst, layer.out_dim]``) and carry ``in_dim`` / ``out_dim``.

:class:`GNNEncoder` implements the stack part of that contract once; :data:`GNN_ENCODERS`
(in :mod:`lmgnn_dist.model`) maps ``model.gnn`` to the classes.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence

import torch
from torch import nn

from ..device import to_device


class SelfLoopLayer(nn.Module):
    r"""One relational message-passing layer with a self-loop term (LM-GNN eq. 1's form):

    .. math::
        h_i^{(l+1)} = \mathrm{dropout}\Big(\sigma\big(m_i^{(l)} + W_0^{(l)} h_i^{(l)}
                      + b^{(l)}\big)\Big)

    where the subclass's ``conv`` (a ``dgl.nn.HeteroGraphConv``, relations keyed by canonical
    etype, ``sum`` over relations) computes the messages :math:`m_i` from the block and
    :math:`W_0` (``self_loop``, an ``nn.Linear`` with bias) is shared by all node types. A dst
    node with no in-edge in the block gets the self-loop term alone.

    Parameters
    ----------
    conv : the ``HeteroGraphConv``; called as ``conv(block, (h_src, h_dst))`` and returning
        ntype -> float ``[N_dst, out_dim]`` for the types that receive messages.
    in_dim, out_dim : feature widths (``in_dim`` / ``out_dim`` attributes, read by generic
        code such as :func:`lmgnn_dist.data.layerwise.layerwise_inference`).
    activation : :math:`\sigma` (``None`` for the last layer, whose output feeds a decoder).
    dropout : applied to the layer output.

    Shapes
    ------
    - input: a block with ``N_src``/``N_dst`` nodes per type; ``h`` dict ntype ->
      float ``[N_src[ntype], in_dim]`` (dst nodes first, as DGL blocks order them).
    - output: dict ntype -> float ``[N_dst[ntype], out_dim]`` for every type with dst nodes,
      on the layer's device (the block and ``h`` are moved there first:
      :func:`~lmgnn_dist.device.to_device`).
    """

    def __init__(self, conv: nn.Module, in_dim: int, out_dim: int, activation=torch.relu,
                 dropout: float = 0.0):
        super().__init__()
        self.conv = conv
        self.self_loop = nn.Linear(in_dim, out_dim, bias=True)
        self.activation = activation
        self.dropout = nn.Dropout(dropout)
        self.in_dim, self.out_dim = in_dim, out_dim

    def relation_conv(self, cetype) -> nn.Module:
        """The per-relation module of relation ``cetype`` (a canonical etype)."""
        return self.conv.mods[str(tuple(cetype))]

    def messages(self, block, h: Dict[str, torch.Tensor],
                 h_dst: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """:math:`m_i`: ntype -> float ``[N_dst, out_dim]`` (types without in-edges may be
        missing). Subclasses reshape ``conv``'s output here if needed."""
        return self.conv(block, (h, h_dst))

    def forward(self, block, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        block, h = to_device(self.self_loop.weight.device, block, h)
        h_dst = {nt: x[:block.num_dst_nodes(nt)] for nt, x in h.items()
                 if block.num_dst_nodes(nt) > 0}
        msgs = self.messages(block, h, h_dst)
        out = {}
        for nt, x in h_dst.items():
            y = self.self_loop(x)
            if nt in msgs:
                y = y + msgs[nt]
            if self.activation is not None:
                y = self.activation(y)
            out[nt] = self.dropout(y)
        return out


class GNNEncoder(nn.Module):
    """A stack of message-passing layers: input dropout, then ``layers[i](blocks[i], h)``.

    Subclasses build ``layers`` (input layer first; ReLU between layers, none after the last,
    whose output feeds a decoder) and implement :meth:`from_config`.

    Shapes
    ------
    - input: ``blocks`` (one per layer, input layer first, as DGL samplers return them) and
      ``h`` dict ntype -> float ``[N_input[ntype], in_dim]`` (the LM embeddings).
    - output: dict ntype -> float ``[N_seeds[ntype], out_dim]``.

    Raises
    ------
    ValueError if the number of blocks differs from the number of layers.
    """

    #: the encoder passes messages over the blocks (the MLP stand-in says True)
    graph_free = False

    def __init__(self, layers: Sequence[nn.Module], dropout: float):
        super().__init__()
        self.input_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(layers)

    @property
    def out_dim(self) -> int:
        """Width of the encoder's output: the last layer's ``out_dim``."""
        return self.layers[-1].out_dim

    @classmethod
    def from_config(cls, model_cfg, in_dim: int, canonical_etypes) -> "GNNEncoder":
        """The encoder ``model_cfg`` (:class:`~lmgnn_dist.config.ModelConfig`) describes, over
        ``canonical_etypes``, reading ``in_dim``-wide inputs."""
        raise NotImplementedError

    def forward(self, blocks: List, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if len(blocks) != len(self.layers):
            raise ValueError(f"got {len(blocks)} blocks for {len(self.layers)} "
                             f"{type(self).__name__} layers")
        h = {nt: self.input_dropout(x) for nt, x in h.items()}
        for layer, block in zip(self.layers, blocks):
            h = layer(block, h)
        return h


def layer_dims(in_dim: int, hidden_dim: int, num_layers: int) -> List[int]:
    """``[in_dim, hidden_dim, ..., hidden_dim]`` (``num_layers + 1`` widths).

    Raises ValueError if ``num_layers < 1``."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    return [in_dim] + [hidden_dim] * num_layers


def stacked_layers(make_layer: Callable[..., nn.Module], in_dim: int, hidden_dim: int,
                   num_layers: int, dropout: float) -> List[nn.Module]:
    """``num_layers`` layers ``make_layer(in_dim, out_dim, activation, dropout)`` of widths
    :func:`layer_dims`, built in order: ReLU and ``dropout`` between layers, none after the
    last (its output feeds a decoder). Raises ValueError if ``num_layers < 1``."""
    dims = layer_dims(in_dim, hidden_dim, num_layers)
    return [make_layer(dims[i], dims[i + 1], torch.relu if i < num_layers - 1 else None,
                       dropout if i < num_layers - 1 else 0.0) for i in range(num_layers)]
