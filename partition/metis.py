"""METIS splits that come out the same every time: pymetis (seeded) under DGL's partitioner.

DGL 2.1's METIS (``dgl.metis_partition_assignment``, which
``dgl.distributed.partition_graph`` calls) returns different splits of the same graph from
one call to the next; DGL's own docs call its METIS output non-deterministic
(dmlc/dgl#3136), and DGL exposes no seed. Measured with DGL 2.1.0 on this project's examples
(one process, 30-40 calls each, another job on the cores): Cora in 2 parts with the weights the
partitioner asked for (train / other nodes and their in-degrees) 4 different splits, edge cuts
256-297 across processes; Cora in 4 parts with the in-degree only, 2; Stack Exchange in 2 parts
with train / other, 2. A fresh clone of this project so partitioned Cora differently from this
checkout (1,389 / 1,346 nodes in part 0) and printed a different ``make demo`` table.

:func:`seeded_metis` keeps every other step of ``partition_graph`` (homogeneous view, halo,
reshuffle, partition book, files) and replaces only its node-to-part assignment by
``pymetis.part_graph`` on a canonical (sorted, simple, symmetric, loop-free) CSR of the same
graph, with METIS's own seed and the same vertex weights DGL would build
(:func:`vertex_weights`). Same measurement: 1 split in 30 calls for each of Cora and Stack
Exchange in 2 and 4 parts, with edge cuts 187 (Cora, 2 parts; DGL: 256-297) and 1,157 (Stack
Exchange; DGL: 1,383).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional, Tuple

import numpy as np

#: recorded in the partitions' fingerprint: METIS partitions made another way are rebuilt
SPLIT_RULE = "pymetis k-way, seeded, on the sorted symmetric CSR; DGL's vertex weights"


def symmetric_csr(src: np.ndarray, dst: np.ndarray, num_nodes: int
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """METIS's input graph: both directions of every edge, self loops and duplicates removed,
    neighbours sorted. ``src``/``dst``: int64 edge end points, shape (E,). Returns ``xadj``
    (int64, shape (num_nodes + 1,)) and ``adjncy`` (int64, shape (E',)), the same arrays
    whatever the order of the input edges."""
    a = np.concatenate([src, dst]).astype(np.int64)
    b = np.concatenate([dst, src]).astype(np.int64)
    keep = a != b
    key = np.unique(a[keep] * num_nodes + b[keep])  # sorted: row-major CSR order
    rows, cols = key // num_nodes, key % num_nodes
    xadj = np.zeros(num_nodes + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=num_nodes), out=xadj[1:])
    return xadj, cols


def vertex_weights(balance_ntypes, in_degrees: np.ndarray, balance_edges: bool
                   ) -> Optional[np.ndarray]:
    """The multi-constraint vertex weights ``dgl.metis_partition_assignment`` builds: one
    0/1 column per distinct value of ``balance_ntypes`` (shape (N,), any ints, or None), then
    with ``balance_edges`` the in-degree per value (or of every node when ``balance_ntypes`` is
    None). Returns int64 flattened row-major, shape (N * ncon,), or None (no weights)."""
    cols = []
    if balance_ntypes is not None:
        values = np.asarray(balance_ntypes).astype(np.int64)
        for v in np.unique(values):
            cols.append((values == v).astype(np.int64))
        if balance_edges:
            cols += [c * in_degrees for c in cols[:]]
    elif balance_edges:
        cols.append(in_degrees.astype(np.int64))
    return np.stack(cols, 1).reshape(-1) if cols else None


def metis_assignment(sim_g, num_parts: int, balance_ntypes=None, balance_edges: bool = False,
                     mode: str = "k-way", objtype: str = "cut", seed: int = 0):
    """Node -> part of the homogeneous DGLGraph ``sim_g`` by seeded METIS (pymetis), with the
    arguments of ``dgl.metis_partition_assignment``. Returns an int64 torch tensor, shape (N,),
    values in [0, num_parts). The same graph, arguments and seed give the same tensor.

    Raises RuntimeError (METIS's error) when METIS cannot split the graph."""
    import pymetis
    import torch

    src, dst = (t.numpy() for t in sim_g.edges())
    xadj, adjncy = symmetric_csr(src, dst, sim_g.num_nodes())
    weights = vertex_weights(balance_ntypes, sim_g.in_degrees().numpy(), balance_edges)
    options = pymetis.Options(seed=seed, objtype=0 if objtype == "cut" else 1)
    cut, parts = pymetis.part_graph(num_parts, xadj=xadj, adjncy=adjncy, vweights=weights,
                                    recursive=mode == "recursive", options=options)
    ncon = 0 if weights is None else len(weights) // max(sim_g.num_nodes(), 1)
    print(f"METIS (pymetis, seed {seed}): {sim_g.num_nodes()} nodes into {num_parts} parts, "
          f"{cut} edge cuts, {ncon} balance weights")
    return torch.as_tensor(np.asarray(parts, dtype=np.int64))


@contextmanager
def seeded_metis(seed: int) -> Iterator[None]:
    """Within the block, ``dgl.distributed.partition_graph`` assigns nodes to parts with
    :func:`metis_assignment` (seed ``seed``) instead of DGL's METIS; restored on exit."""
    import dgl.distributed.partition as dgl_partition

    original = dgl_partition.metis_partition_assignment

    def assign(sim_g, k, balance_ntypes=None, balance_edges=False, mode="k-way",
               objtype="cut"):
        return metis_assignment(sim_g, k, balance_ntypes, balance_edges, mode, objtype, seed)

    dgl_partition.metis_partition_assignment = assign
    try:
        yield
    finally:
        dgl_partition.metis_partition_assignment = original
