"""Distributed mini-batch loading over a ``DistGraph`` with type names kept.

DGL 2.1 treats a ``DistGraph`` with one node type and one edge type as homogeneous: seeds must
be a tensor (a dict trips its sampler) and blocks come back typed ``('_N', '_E', '_N')``. This
module hides that in one place: callers always pass and receive dicts keyed by the graph's
real ntype names, and blocks always carry the real canonical etypes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from partition.etypes import CanonicalEtype

from .neighbors import SeededNeighborSampler

Batch = Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor], List]


def is_single_type(g) -> bool:
    return len(g.ntypes) == 1 and len(g.canonical_etypes) == 1


def _rebuild_block(block, edges: Dict[CanonicalEtype, Tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                   ntype_of=lambda nt: nt):
    """A block with ``block``'s nodes (and their ``dgl.NID``) and only ``edges``:
    canonical etype -> (local src, local dst, ``dgl.EID``)."""
    import dgl

    out = dgl.create_block({c: (s, d) for c, (s, d, _) in edges.items()},
                           num_src_nodes={ntype_of(nt): block.num_src_nodes(nt)
                                          for nt in block.srctypes},
                           num_dst_nodes={ntype_of(nt): block.num_dst_nodes(nt)
                                          for nt in block.dsttypes})
    for nt in block.srctypes:
        if dgl.NID in block.srcnodes[nt].data:
            out.srcnodes[ntype_of(nt)].data[dgl.NID] = block.srcnodes[nt].data[dgl.NID]
    for nt in block.dsttypes:
        if dgl.NID in block.dstnodes[nt].data:
            out.dstnodes[ntype_of(nt)].data[dgl.NID] = block.dstnodes[nt].data[dgl.NID]
    for c, (_, _, eid) in edges.items():
        if eid is not None:
            out.edges[c].data[dgl.EID] = eid
    return out


def _block_edges(block, cetype):
    import dgl

    src, dst = block.edges(etype=cetype)
    eid = block.edges[cetype].data.get(dgl.EID)
    return src, dst, eid


def _rename_block(block, ntype: str, cetype):
    return _rebuild_block(block, {cetype: _block_edges(block, block.canonical_etypes[0])},
                          ntype_of=lambda _: ntype)


def normalize_batch(g, input_nodes, seeds, blocks) -> Batch:
    """Dict-ify ``input_nodes``/``seeds`` and give single-type blocks their real type names.

    Three shapes come back from DGL: dicts (several node types); tensors with blocks typed
    ``_N``/``_E`` (one node type, one relation); and, for one node type with several
    relations (e.g. a relation and its reverse), ``input_nodes`` as a tensor but ``seeds`` as
    the dict it was given, with blocks that already carry the real names."""
    if isinstance(input_nodes, dict):
        return input_nodes, seeds, blocks
    ntype = g.ntypes[0]
    seeds = seeds if isinstance(seeds, dict) else {ntype: seeds}
    if not is_single_type(g):
        return {ntype: input_nodes}, seeds, blocks
    cetype = g.canonical_etypes[0]
    return {ntype: input_nodes}, seeds, [_rename_block(b, ntype, cetype) for b in blocks]


def node_batches(g, seeds: Dict[str, torch.Tensor], fanouts: Sequence[int], batch_size: int,
                 shuffle: bool, full_neighbors: bool = False,
                 generator: Optional[torch.Generator] = None) -> Iterator[Batch]:
    """Iterate ``(input_nodes, seeds, blocks)`` over ``seeds`` with DGL's distributed loader
    and the trainer-side seeded neighbour sampler (:mod:`.neighbors`).

    Parameters
    ----------
    g : ``dgl.distributed.DistGraph``.
    seeds : ntype -> int64 node ids (this trainer's share, e.g. from ``node_split``).
    fanouts : neighbours per layer, input layer first; ``full_neighbors`` takes all of them
        (evaluation).
    shuffle : visit ``seeds`` in an order drawn from ``generator``.
    generator : the draws of the shuffle and of the sampled neighbours (required unless
        ``full_neighbors`` and not ``shuffle``): the same generator state gives the same
        batches.

    Yields
    ------
    input_nodes : ntype -> int64 ``[N_in]``; the seeds are its first entries.
    seeds : ntype -> int64 ``[B]``.
    blocks : ``len(fanouts)`` DGL blocks, input layer first, with real type names.
    """
    import dgl

    if shuffle:  # here, not in the loader (which draws from torch's global RNG)
        seeds = {nt: ids[torch.randperm(len(ids), generator=generator)]
                 for nt, ids in seeds.items()}
    arg = next(iter(seeds.values())) if is_single_type(g) else seeds
    loader = dgl.dataloading.DistNodeDataLoader(
        g, arg, _sampler(fanouts, full_neighbors, generator), batch_size=batch_size,
        shuffle=False, drop_last=False)
    for input_nodes, out, blocks in loader:
        yield normalize_batch(g, input_nodes, out, blocks)


def _sampler(fanouts: Sequence[int], full_neighbors: bool,
             generator: Optional[torch.Generator]) -> SeededNeighborSampler:
    return SeededNeighborSampler([-1] * len(fanouts) if full_neighbors else fanouts, generator)


def sample_blocks(g, seeds: Dict[str, torch.Tensor], fanouts: Sequence[int],
                  full_neighbors: bool = False,
                  generator: Optional[torch.Generator] = None) -> Batch:
    """One mini-batch of blocks for the given seed nodes (what :func:`node_batches` yields,
    for seeds chosen by the caller, e.g. the end points of a batch of edges); neighbours drawn
    from ``generator`` (required unless ``full_neighbors``)."""
    arg = seeds[g.ntypes[0]] if is_single_type(g) else seeds
    input_nodes, out, blocks = _sampler(fanouts, full_neighbors, generator).sample(g, arg)
    return normalize_batch(g, input_nodes, out, blocks)


def drop_edges_between(blocks: List, pairs: Dict[CanonicalEtype, Tuple[torch.Tensor, torch.Tensor]],
                       num_dst_nodes: Dict[str, int]) -> List:
    """Remove from every block the edges of relation ``c`` joining ``pairs[c] = (u, v)``.

    Used to exclude a link-prediction batch's positive edges (and their reverses) from its
    own message passing, as DGL's ``exclude="reverse_types"`` does for in-memory graphs (a
    ``DistGraph`` ignores that option in DGL 2.1). Edges are matched by their end points'
    global ids (``dgl.NID``), so parallel copies of a pair go too.

    Shapes: ``u``, ``v`` int64 ``[P]`` global node ids of ``c``'s source / destination type;
    ``num_dst_nodes``: ntype -> number of nodes (for pair keys).
    """
    import dgl

    out = []
    for block in blocks:
        edges, changed = {}, False
        for c in block.canonical_etypes:
            src, dst, eid = _block_edges(block, c)
            if c in pairs and len(src):
                u, v = pairs[c]
                m = num_dst_nodes[c[2]]
                gsrc = block.srcnodes[c[0]].data[dgl.NID][src]
                gdst = block.dstnodes[c[2]].data[dgl.NID][dst]
                keep = ~torch.isin(gsrc * m + gdst, u * m + v)
                if not keep.all():
                    changed = True
                    src, dst = src[keep], dst[keep]
                    eid = eid[keep] if eid is not None else None
            edges[c] = (src, dst, eid)
        out.append(_rebuild_block(block, edges) if changed else block)
    return out


@dataclass
class EdgeBatch:
    """A mini-batch of target edges of one relation, with the blocks of their end points.

    Attributes
    ----------
    input_nodes : ntype -> int64 ``[N_in]`` (the LM/embedding inputs of the first block).
    seeds : ntype -> int64 ``[N_out]``: the blocks' output nodes, i.e. the unique end points
        of the positive edges and of the negatives; the GNN output of type ``t`` has one row
        per ``seeds[t]`` entry.
    blocks : DGL blocks, input layer first.
    eids : int64 ``[B]`` the positive edges' ids.
    src_pos, dst_pos : int64 ``[B]`` rows of each edge's source / destination in the output of
        its type.
    neg_pos : int64 ``[B, k]`` rows of each positive's negative destinations, or None.
    """

    input_nodes: Dict[str, torch.Tensor]
    seeds: Dict[str, torch.Tensor]
    blocks: List
    eids: torch.Tensor
    src_pos: torch.Tensor
    dst_pos: torch.Tensor
    neg_pos: Optional[torch.Tensor] = None


def edge_batch(g, cetype: CanonicalEtype, eids: torch.Tensor, fanouts: Sequence[int],
               negatives=None, exclude: Optional[CanonicalEtype] = None,
               full_neighbors: bool = False, src_dst=None,
               generator: Optional[torch.Generator] = None) -> EdgeBatch:
    """Sample the blocks of one batch of target edges ``eids`` of ``cetype``.

    Parameters
    ----------
    negatives : ``(neg_nodes [m], pair_index [B, k])`` negative destination nodes and, per
        positive, which of them it is scored against (:mod:`lmgnn_dist.data.sampling`), or None.
    exclude : the reverse relation of ``cetype`` if the batch's positive edges (and their
        reverses ``(v, u)`` in it) must be removed from the blocks (link-prediction training;
        see :func:`drop_edges_between`); ``cetype`` itself may be its own reverse.
    src_dst : the edges' ``(src, dst)`` if known (held-out edges that are not in the graph);
        by default looked up with ``g.find_edges``.
    generator : the neighbour draws (:func:`sample_blocks`).
    """
    src_t, _, dst_t = cetype
    src, dst = src_dst if src_dst is not None else g.find_edges(eids, etype=cetype)
    neg_nodes, pair_index = negatives if negatives is not None else (dst[:0], None)
    if src_t == dst_t:
        uniq, inv = torch.unique(torch.cat([src, dst, neg_nodes]), return_inverse=True)
        seeds = {src_t: uniq}
        src_pos, dst_pos, neg_rows = inv[:len(src)], inv[len(src):2 * len(src)], inv[2 * len(src):]
    else:
        s_uniq, src_pos = torch.unique(src, return_inverse=True)
        d_uniq, d_inv = torch.unique(torch.cat([dst, neg_nodes]), return_inverse=True)
        seeds = {src_t: s_uniq, dst_t: d_uniq}
        dst_pos, neg_rows = d_inv[:len(dst)], d_inv[len(dst):]
    input_nodes, out, blocks = sample_blocks(g, seeds, fanouts, full_neighbors, generator)
    if exclude is not None:
        pairs = {cetype: (src, dst)}
        back = pairs.get(exclude, (src[:0], dst[:0]))
        pairs[exclude] = (torch.cat([back[0], dst]), torch.cat([back[1], src]))
        blocks = drop_edges_between(blocks, pairs, {nt: g.num_nodes(nt) for nt in g.ntypes})
    neg_pos = neg_rows[pair_index] if pair_index is not None else None
    return EdgeBatch(input_nodes, out, blocks, eids, src_pos, dst_pos, neg_pos)


def local_nodes(g, ntype: str) -> torch.Tensor:
    """This trainer's share of *all* nodes of ``ntype`` (DGL ``node_split``, even split that
    favours the trainer's own partition): int64 ids. Used by every full-graph pass."""
    import dgl

    return dgl.distributed.node_split(torch.ones(g.num_nodes(ntype), dtype=torch.bool),
                                      g.get_partition_book(), ntype=ntype, force_even=True)


def num_batches(num_seeds: int, batch_size: int) -> int:
    return (num_seeds + batch_size - 1) // batch_size
