"""Checks of a whole (valid) TAG against what DGL's partitioner can do with it.

DGL's ``partition_graph`` fails with a library traceback on a relation without edges, a node
type without nodes, or fewer nodes than partitions; these functions settle such cases first:
empty relations and node types are dropped with a note (nothing is lost: they hold no data),
everything else is refused with one line.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from .tag import TAG, TAGFormatError, etype_file_name
from .tokenize import token_lengths


def drop_empty(tag: TAG, keep: Sequence[str] = ()) -> Tuple[TAG, List[str]]:
    """``tag`` without relations of 0 edges and node types of 0 nodes, and a note per drop.

    ``keep`` names relations (``src__etype__dst``) that must keep edges: the link-prediction
    targets after their val/test edges were held out.

    Raises
    ------
    TAGFormatError
        A ``keep`` relation has no edge left, or no relation has any edge.
    """
    notes, edges = [], {}
    for cetype, t in tag.edges.items():
        name = etype_file_name(cetype)
        if t.num_edges:
            edges[cetype] = t
        elif name in keep:
            raise TAGFormatError(f"edges/{name}.parquet: link prediction on {name} leaves no "
                                 "train edge once its val/test edges are held out")
        else:
            notes.append(f"edges/{name}.parquet has no edges: relation left out")
    if not edges:
        raise TAGFormatError("the TAG has no edge in any relation: nothing to partition")
    nodes = {}
    for ntype, t in tag.nodes.items():
        if t.num_nodes:
            nodes[ntype] = t
        else:
            notes.append(f"nodes/{ntype}.parquet has no rows: node type left out")
    if not notes:
        return tag, notes
    return TAG(tag.name, nodes, edges, tag.metadata), notes


def check_num_parts(tag: TAG, num_parts: int) -> None:
    """Raises ValueError when the graph has fewer nodes than ``num_parts`` (one line)."""
    total = sum(t.num_nodes for t in tag.nodes.values())
    if num_parts > total:
        raise ValueError(f"num_parts (--num-parts) {num_parts} is more than the {total} nodes "
                         "of the graph: every partition needs nodes")


def check_token_counts(tag: TAG, input_ids: Dict[str, np.ndarray], pad_token_id: int,
                       num_special: int) -> None:
    """Raises TAGFormatError naming the first node whose text gave no token but the
    ``num_special`` ones every text gets (e.g. [CLS]/[SEP]): a text the tokenizer strips to
    nothing, such as unusual invisible characters."""
    for ntype, ids in input_ids.items():
        empty = np.flatnonzero(token_lengths(ids, pad_token_id) <= num_special)
        if len(empty):
            row = int(empty[0])
            t = tag.nodes[ntype]
            raise TAGFormatError(f"{t.path or 'nodes/' + ntype + '.parquet'}: node id "
                                 f"{int(t.ids[row])} (row {row}) has a text with no token "
                                 f"({len(empty)} such nodes)")
