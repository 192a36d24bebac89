"""Link-prediction hold-out: val/test target edges leave the message-passing graph.

For a link-prediction task on canonical etype ``c`` the partitioner removes every ``val`` and
``test`` edge of ``c`` -- and the matching reverse edge ``(v, u)`` of ``c``'s reverse relation
-- from the graph it partitions, so no GNN ever aggregates over an edge it is evaluated on.
The removed edges are kept aside with a fixed set of **filtered** negatives per positive:
``num_negatives`` destination nodes ``v'`` drawn uniformly (seeded) among the nodes of the
destination type such that ``(u, v')`` is not an edge of ``c`` in *any* split, as in the
filtered setting of Bordes et al. (2013) / OGB's link-property benchmarks.

Reverse relation of ``c = (s, e, d)``: ``(d, "rev_" + e, s)`` if the TAG has it (the
converters' convention), else ``(d, e[4:], s)`` if ``e`` starts with ``rev_``; a relation
between one node type (``s == d``) without such a partner is its own reverse (both directions
stored in one table, e.g. Cora's citations).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .etypes import CanonicalEtype
from .etypes import parse_etype as parse_etype_in
from .tag import SPLIT_CODE, TAG, EdgeTable, TAGFormatError, etype_file_name

#: largest ``num_eval_edges * num_dst_nodes`` for which negatives are drawn without replacement
#: (a random permutation per positive); above it they are drawn with replacement.
EXACT_SAMPLING_LIMIT = 50_000_000


@dataclass
class HeldOut:
    """The held-out edges of one split, as node row ids (pre-partition DGL ids).

    Attributes
    ----------
    src, dst : int64 ``[E]`` end points of the positive edges.
    neg_dst : int64 ``[E, K]`` filtered negative destinations per positive; ``-1`` pads a row
        whose source has fewer than ``K`` non-neighbours.
    """

    src: np.ndarray
    dst: np.ndarray
    neg_dst: np.ndarray


def parse_etype(name: str, tag: TAG) -> CanonicalEtype:
    """``"question__tagged__tag"`` -> the canonical etype, checked against the TAG.

    Raises TAGFormatError naming the known relations if ``name`` is not one of them.
    """
    try:
        return parse_etype_in(name, tag.edges, "link-prediction target", "the TAG")
    except ValueError as exc:
        raise TAGFormatError(str(exc)) from None


def find_reverse(tag: TAG, cetype: CanonicalEtype) -> Optional[CanonicalEtype]:
    """The reverse relation of ``cetype`` in ``tag`` (module docstring), or None."""
    s, e, d = cetype
    for cand in ((d, "rev_" + e, s), (d, e[4:], s) if e.startswith("rev_") else None):
        if cand is not None and cand in tag.edges:
            return cand
    return cetype if s == d else None


def _pair_keys(src: np.ndarray, dst: np.ndarray, num_dst: int) -> np.ndarray:
    return src.astype(np.int64) * num_dst + dst.astype(np.int64)


def filtered_negatives(src: np.ndarray, true_keys: np.ndarray, num_dst: int, k: int,
                       rng: np.random.Generator) -> np.ndarray:
    """``k`` negative destinations per source ``src[i]``, none forming a true edge.

    Parameters
    ----------
    src : int64 ``[E]`` source rows.
    true_keys : int64 sorted ``src * num_dst + dst`` of every true edge.
    num_dst : nodes of the destination type.

    Returns
    -------
    int64 ``[E, k]``. Distinct per row (exact sampling) when ``E * num_dst`` is at most
    :data:`EXACT_SAMPLING_LIMIT`, otherwise drawn with replacement by rejection; ``-1`` pads
    rows of sources with fewer than ``k`` non-neighbours.
    """
    out = np.full((len(src), k), -1, dtype=np.int64)
    if len(src) == 0 or k == 0:
        return out
    if len(src) * num_dst <= EXACT_SAMPLING_LIMIT:
        cand = np.broadcast_to(np.arange(num_dst, dtype=np.int64), (len(src), num_dst))
        is_true = np.isin(_pair_keys(src[:, None], cand, num_dst), true_keys)
        # random order, true edges last: the first k columns are a uniform sample of the rest
        order = np.argsort(rng.random((len(src), num_dst)) + is_true, axis=1)[:, :k]
        picked = np.take_along_axis(cand, order, axis=1)
        valid = ~np.take_along_axis(is_true, order, axis=1)
        out[:, :picked.shape[1]] = np.where(valid, picked, -1)
        return out
    filled = np.zeros(len(src), dtype=np.int64)
    for _ in range(64):  # rejection rounds; a true edge is rare when num_dst is this large
        todo = np.flatnonzero(filled < k)
        if not len(todo):
            break
        cand = rng.integers(0, num_dst, size=(len(todo), k))
        ok = ~np.isin(_pair_keys(src[todo, None], cand, num_dst), true_keys)
        for row, c, m in zip(todo, cand, ok):
            take = c[m][:k - filled[row]]
            out[row, filled[row]:filled[row] + len(take)] = take
            filled[row] += len(take)
    return out


def hold_out(tag: TAG, cetype: CanonicalEtype, num_negatives: int, seed: int
             ) -> Tuple[TAG, Dict[str, HeldOut], dict]:
    """Remove ``cetype``'s val/test edges (and their reverses) from ``tag``.

    Returns
    -------
    (tag', held, info) : ``tag'`` shares every table with ``tag`` except the two edge tables
    that lost edges; ``held["val"]``/``held["test"]`` are the removed positives with filtered
    negatives (:class:`HeldOut`); ``info`` counts what was removed (for ``lmgnn_meta.json``).

    Raises
    ------
    TAGFormatError if the edge table has no ``split`` column or no val/test edge.
    """
    table = tag.edges[cetype]
    name = f"edges/{etype_file_name(cetype)}.parquet"
    if table.split is None:
        raise TAGFormatError(f"{name}: link prediction on {etype_file_name(cetype)} needs a "
                             "'split' column (train/val/test per edge)")
    held_mask = np.isin(table.split, [SPLIT_CODE["val"], SPLIT_CODE["test"]])
    if not held_mask.any():
        raise TAGFormatError(f"{name}: no 'val' or 'test' edge to evaluate link prediction on")
    num_dst = tag.nodes[cetype[2]].num_nodes
    true_keys = np.unique(_pair_keys(table.src, table.dst, num_dst))
    rng = np.random.default_rng(seed)
    held: Dict[str, HeldOut] = {}
    for split in ("val", "test"):
        rows = np.flatnonzero(table.split == SPLIT_CODE[split])
        src, dst = table.src[rows], table.dst[rows]
        held[split] = HeldOut(src, dst, filtered_negatives(src, true_keys, num_dst,
                                                           num_negatives, rng))
    edges = dict(tag.edges)
    edges[cetype] = _keep(table, ~held_mask)
    reverse = find_reverse(tag, cetype)
    removed_reverse = 0
    if reverse is not None:
        rev = edges[reverse]
        num_src = tag.nodes[cetype[0]].num_nodes  # the reverse's destination type
        gone = _pair_keys(table.dst[held_mask], table.src[held_mask], num_src)
        keep = ~np.isin(_pair_keys(rev.src, rev.dst, num_src), gone)
        removed_reverse = int((~keep).sum())
        edges[reverse] = _keep(rev, keep)
    info = {"reverse": etype_file_name(reverse) if reverse else None,
            "num_negatives": num_negatives, "seed": seed,
            "val": len(held["val"].src), "test": len(held["test"].src),
            "removed_reverse": removed_reverse,
            "padded_negatives": int(sum((h.neg_dst < 0).sum() for h in held.values()))}
    return TAG(tag.name, tag.nodes, edges, tag.metadata), held, info


def _keep(t: EdgeTable, mask: np.ndarray) -> EdgeTable:
    pick = (lambda a: a[mask] if a is not None else None)
    rows = t.orig_row if t.orig_row is not None else np.arange(t.num_edges, dtype=np.int64)
    return EdgeTable(t.canonical_etype, t.src[mask], t.dst[mask], pick(t.label), pick(t.split),
                     t.classes, rows[mask])
