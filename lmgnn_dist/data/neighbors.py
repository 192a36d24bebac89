"""Neighbour sampling on the trainer with a seeded generator: mini-batches that a seed
reproduces, bit for bit.

DGL 2.1's distributed neighbour sampler draws on the servers (remote partitions) and in the
trainer's DGL RNG (local partition): the servers' draws depend on the order in which the
trainers' requests arrive, so two runs of the same seed sample different blocks. Here each
layer instead asks the servers for the *full* in-neighbourhood of its seeds (``fanout=-1``:
no draw at all), puts the edges in a canonical order (destination, then edge id -- not the
order the replies arrived in), and keeps ``min(degree, fanout)`` of every seed's in-edges of
each relation uniformly without replacement, drawn from the caller's ``torch.Generator``
(the semantics of ``dgl.sampling.sample_neighbors`` with an int fanout). The blocks, their
edge order and hence every float sum over a node's in-edges are then the same in every run.

Cost: a layer transfers every in-edge of its seeds, not ``fanout`` of them -- the same on
graphs whose degrees are near the fanouts (Cora, arXiv), more where a few nodes have very many
in-edges.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch


def canonical_order(dst: torch.Tensor, eid: torch.Tensor) -> torch.Tensor:
    """Positions that sort edges by (destination, edge id): int64 ``[E]``."""
    order = torch.argsort(eid, stable=True)
    return order[torch.argsort(dst[order], stable=True)]


def choose_in_edges(dst: torch.Tensor, fanout: int, generator: Optional[torch.Generator]
                    ) -> torch.Tensor:
    """Of edges already in canonical order with destinations ``dst`` (int64 ``[E]``, grouped),
    the positions of at most ``fanout`` per destination, uniform without replacement
    (``fanout`` -1: all; 0: none), in canonical order. Draws ``E`` uniforms from
    ``generator`` when ``fanout`` > 0."""
    n = len(dst)
    if fanout < 0 or n == 0:
        return torch.arange(n)
    if fanout == 0:  # no message passing (the graph-free head): no draw
        return torch.arange(0)
    key = torch.rand(n, generator=generator)
    # within each destination's run, rank the edges by their key
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]
    _, counts = torch.unique_consecutive(dst[order], return_counts=True)
    first = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.arange(n) - first
    return torch.sort(order[rank < fanout]).values


def sample_frontier(g, seeds, fanout: int, generator: Optional[torch.Generator]):
    """One layer: the in-edges of ``seeds`` (ntype -> ids, or ids) kept as described in the
    module docstring, as a frontier graph over all of ``g``'s nodes whose edges carry their
    ids in ``g`` (``dgl.EID``), in canonical order."""
    import dgl

    full = g.sample_neighbors(seeds, -1)
    keep: Dict = {}
    for c in full.canonical_etypes:
        _, dst = full.edges(etype=c)
        eid = full.edges[c].data[dgl.EID]
        order = canonical_order(dst, eid)
        keep[c] = order[choose_in_edges(dst[order], fanout, generator)]
    sub = dgl.edge_subgraph(full, keep, relabel_nodes=False, store_ids=False)
    for c in full.canonical_etypes:
        sub.edges[c].data[dgl.EID] = full.edges[c].data[dgl.EID][keep[c]]
    return sub


class SeededNeighborSampler:
    """A DGL block sampler (``sample_blocks(g, seeds) -> (input_nodes, output_nodes,
    blocks)``, what ``DistNodeDataLoader``'s collator calls) over ``fanouts`` (input layer
    first; -1: all neighbours) drawing from ``generator`` (None only for full
    neighbourhoods).

    Raises ValueError for a fanout without a generator."""

    def __init__(self, fanouts: Sequence[int], generator: Optional[torch.Generator] = None):
        if generator is None and any(f > 0 for f in fanouts):
            raise ValueError("sampling with a fanout needs a generator (reproducible draws)")
        self.fanouts, self.generator = list(fanouts), generator

    def sample_blocks(self, g, seeds, exclude_eids=None):
        """Blocks of ``seeds`` (DGL's ``BlockSampler.sample_blocks`` contract; the seeds are
        the first input nodes of every block)."""
        import dgl

        output_nodes, blocks = seeds, []
        for fanout in reversed(self.fanouts):
            frontier = sample_frontier(g, seeds, fanout, self.generator)
            block = dgl.to_block(frontier, seeds)
            block.edata[dgl.EID] = frontier.edata[dgl.EID]
            seeds = block.srcdata[dgl.NID]
            blocks.insert(0, block)
        return seeds, output_nodes, blocks

    sample = sample_blocks
