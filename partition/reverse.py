"""Reverse relations: each directed relation also carries its messages the other way.

A TAG stores a relation one way (``paper__cites__paper``: ``src`` cites ``dst``), so an RGCN
over it passes messages only from cited to citing papers. With ``add_reverse_edges`` (the
partitioner's default, :class:`partition.options.PartitionOptions`) every relation
``(s, e, d)`` whose reverse is not in the TAG gets one, ``(d, "rev_" + e, s)`` with the edges
``(v, u)`` -- GraphStorm's construction does the same (``rev-<etype>``); we use ``rev_``
because type names are identifiers (:mod:`partition.tag`). The reverse relation carries no
``label`` or ``split`` (it is never a task target); ``orig_row`` is the forward edge's row.

A relation is left as it is when
- its reverse is already in the TAG: ``(d, "rev_" + e, s)``, or ``(d, e[4:], s)`` for a relation
  named ``rev_<e>`` (the converters' convention, :func:`partition.holdout.find_reverse`);
- it joins one node type and already stores both directions of every edge (e.g. Cora's
  citations, made symmetric upstream): a reverse relation would repeat each edge;
- it has no edges (the partitioner leaves it out).

Applied once, before the link-prediction hold-out, so :mod:`partition.holdout` removes a held-out
edge's reverse from the added relation as it does for a reverse in the TAG.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

from .tag import TAG, EdgeTable, etype_file_name

CanonicalEtype = Tuple[str, str, str]

#: prefix of a reverse relation's name
REV_PREFIX = "rev_"


def reverse_name(etype: str) -> str:
    """``cites -> rev_cites``, ``rev_cites -> cites``."""
    return etype[len(REV_PREFIX):] if etype.startswith(REV_PREFIX) else REV_PREFIX + etype


def is_symmetric(t: EdgeTable, num_nodes: int) -> bool:
    """Whether a relation of one node type holds ``(v, u)`` for every edge ``(u, v)``."""
    keys = np.unique(t.src.astype(np.int64) * num_nodes + t.dst)
    back = t.dst.astype(np.int64) * num_nodes + t.src
    return bool(np.isin(back, keys).all())


def add_reverse_edges(tag: TAG) -> Tuple[TAG, Dict[str, dict]]:
    """``tag`` with a reverse relation for every relation that lacks one (module docstring).

    Returns
    -------
    (tag', record) : ``tag'`` shares every table with ``tag`` and adds the reverse tables;
    ``record`` has ``added`` (reverse ``src__etype__dst`` -> the relation it reverses, and
    its number of edges) and ``skipped`` (relation -> why none was added), for
    ``lmgnn_meta.json``.
    """
    edges = dict(tag.edges)
    added, skipped = {}, {}
    for (s, e, d), t in tag.edges.items():
        name = etype_file_name((s, e, d))
        rev = (d, reverse_name(e), s)
        if rev in tag.edges:
            skipped[name] = f"its reverse {etype_file_name(rev)} is in the TAG"
        elif t.num_edges == 0:  # left out with a note by graph_checks.drop_empty
            skipped[name] = "it has no edges"
        elif s == d and is_symmetric(t, tag.nodes[s].num_nodes):
            skipped[name] = "it stores both directions of every edge already"
        else:
            rows = t.orig_row if t.orig_row is not None else np.arange(t.num_edges,
                                                                        dtype=np.int64)
            edges[rev] = EdgeTable(rev, t.dst.copy(), t.src.copy(), orig_row=rows.copy())
            added[etype_file_name(rev)] = {"reverse_of": name, "num_edges": t.num_edges}
    return TAG(tag.name, tag.nodes, edges, tag.metadata), {"added": added, "skipped": skipped}
