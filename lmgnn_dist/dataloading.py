"""Distributed mini-batch loading over a ``DistGraph`` with type names kept.

DGL 2.1 treats a ``DistGraph`` with one node type and one edge type as homogeneous: seeds must
be a tensor (a dict trips its sampler) and blocks come back typed ``('_N', '_E', '_N')``. This
module hides that in one place: callers always pass and receive dicts keyed by the graph's
real ntype names, and blocks always carry the real canonical etypes.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Sequence, Tuple

import torch

Batch = Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], List]


def is_single_type(g) -> bool:
    return len(g.ntypes) == 1 and len(g.canonical_etypes) == 1


def _rename_block(block, ntype: str, cetype):
    import dgl

    src, dst = block.edges()
    return dgl.create_block({cetype: (src, dst)},
                            num_src_nodes={ntype: block.num_src_nodes()},
                            num_dst_nodes={ntype: block.num_dst_nodes()})


def normalize_batch(g, input_nodes, seeds, blocks) -> Batch:
    """Dict-ify ``input_nodes``/``seeds`` and give single-type blocks their real type names."""
    if isinstance(input_nodes, dict):
        return input_nodes, seeds, blocks
    ntype, cetype = g.ntypes[0], g.canonical_etypes[0]
    return ({ntype: input_nodes}, {ntype: seeds},
            [_rename_block(b, ntype, cetype) for b in blocks])


def node_batches(g, seeds: Dict[str, torch.Tensor], fanouts: Sequence[int], batch_size: int,
                 shuffle: bool, full_neighbors: bool = False) -> Iterator[Batch]:
    """Iterate ``(input_nodes, seeds, blocks)`` over ``seeds`` with DGL's neighbour sampler.

    Parameters
    ----------
    g : ``dgl.distributed.DistGraph``.
    seeds : ntype -> int64 node ids (this trainer's share, e.g. from ``node_split``).
    fanouts : neighbours per layer, input layer first; ``full_neighbors`` takes all of them
        (``MultiLayerFullNeighborSampler``, used for evaluation).

    Yields
    ------
    input_nodes : ntype -> int64 ``[N_in]``; the seeds are its first entries.
    seeds : ntype -> int64 ``[B]``.
    blocks : ``len(fanouts)`` DGL blocks, input layer first, with real type names.
    """
    import dgl

    if full_neighbors:
        sampler = dgl.dataloading.MultiLayerFullNeighborSampler(len(fanouts))
    else:
        sampler = dgl.dataloading.MultiLayerNeighborSampler(list(fanouts))
    arg = next(iter(seeds.values())) if is_single_type(g) else seeds
    loader = dgl.dataloading.DistNodeDataLoader(g, arg, sampler, batch_size=batch_size,
                                                shuffle=shuffle, drop_last=False)
    for input_nodes, out, blocks in loader:
        yield normalize_batch(g, input_nodes, out, blocks)


def local_nodes(g, ntype: str) -> torch.Tensor:
    """This trainer's share of *all* nodes of ``ntype`` (DGL ``node_split``, even split that
    favours the trainer's own partition): int64 ids. Used by every full-graph pass."""
    import dgl

    return dgl.distributed.node_split(torch.ones(g.num_nodes(ntype), dtype=torch.bool),
                                      g.get_partition_book(), ntype=ntype, force_even=True)


def num_batches(num_seeds: int, batch_size: int) -> int:
    return (num_seeds + batch_size - 1) // batch_size
