"""Reverse relations (``data.add_reverse_edges``, :mod:`partition.reverse`): names and counts,
none added where the TAG has the reverse or a same-type relation is symmetric, the hold-out
removes held-out edges' added reverses, and the partitions record the option."""
from __future__ import annotations

import dgl
import numpy as np
import pytest
from conftest import make_tiny_directed_tag, make_tiny_hetero_tag, make_tiny_tag

from partition.build import PartitionOptions, load_partition_meta, partition_tag
from partition.fingerprint import fingerprint_changes
from partition.holdout import find_reverse, hold_out
from partition.reverse import add_reverse_edges
from partition.tag import SPLIT_CODE

CITES, REV = ("paper", "cites", "paper"), ("paper", "rev_cites", "paper")


def test_directed_relation_gets_its_reverse():
    tag = make_tiny_directed_tag()
    out, record = add_reverse_edges(tag)
    e, r = out.edges[CITES], out.edges[REV]
    assert set(out.edges) == {CITES, REV}
    assert r.num_edges == e.num_edges > 0
    np.testing.assert_array_equal(r.src, e.dst)
    np.testing.assert_array_equal(r.dst, e.src)
    np.testing.assert_array_equal(r.orig_row, np.arange(e.num_edges))  # the forward edge's row
    assert r.label is None and r.split is None  # never a task target
    assert record == {"added": {"paper__rev_cites__paper": {"reverse_of": "paper__cites__paper",
                                                             "num_edges": e.num_edges}},
                      "skipped": {}}
    assert out.edges[CITES] is e and tag.edges.keys() == {CITES}  # the input is left as it was


def test_no_duplicates_where_the_reverse_exists():
    hetero = make_tiny_hetero_tag()
    out, record = add_reverse_edges(hetero)
    assert out.edges.keys() == hetero.edges.keys() and not record["added"]
    assert record["skipped"]["question__tagged__tag"] == ("its reverse tag__rev_tagged__question "
                                                          "is in the TAG")
    assert record["skipped"]["tag__rev_tagged__question"] == ("its reverse question__tagged__tag "
                                                              "is in the TAG")
    # Cora-like: one node type, both directions of every citation stored already
    sym = make_tiny_tag()
    out, record = add_reverse_edges(sym)
    assert out.edges.keys() == {CITES} and not record["added"]
    assert record["skipped"] == {"paper__cites__paper":
                                 "it stores both directions of every edge already"}


def test_holdout_removes_the_added_reverses():
    tag, _ = add_reverse_edges(make_tiny_directed_tag())
    e = tag.edges[CITES]
    assert find_reverse(tag, CITES) == REV
    out, held, info = hold_out(tag, CITES, num_negatives=3, seed=0)
    gone = np.isin(e.split, [SPLIT_CODE["val"], SPLIT_CODE["test"]])
    assert info["reverse"] == "paper__rev_cites__paper"
    assert info["removed_reverse"] == int(gone.sum()) == len(held["val"].src) + len(held["test"].src)
    pairs = lambda t: set(zip(t.src.tolist(), t.dst.tolist()))  # noqa: E731
    held_pairs = set(zip(e.src[gone].tolist(), e.dst[gone].tolist()))
    kept_pairs = set(zip(e.src[~gone].tolist(), e.dst[~gone].tolist()))
    assert pairs(out.edges[CITES]) == kept_pairs
    assert {(v, u) for u, v in pairs(out.edges[REV])} == kept_pairs
    assert not held_pairs & {(v, u) for u, v in pairs(out.edges[REV])}


@pytest.fixture(scope="module")
def directed_parts(tmp_path_factory, tiny_directed_dir, tiny_bert_dir):
    out = tmp_path_factory.mktemp("rev") / "parts"
    opts = PartitionOptions(num_parts=2, method="metis", model=str(tiny_bert_dir), max_seq_len=16,
                            graph_name="td")
    return out, opts, partition_tag(tiny_directed_dir, out, opts, progress=False)


def test_partitions_hold_and_record_the_reverse(directed_parts, tiny_directed_dir):
    out, opts, meta = directed_parts
    n = make_tiny_directed_tag().edges[CITES].num_edges
    assert meta["reverse_edges"]["added"] == {
        "paper__rev_cites__paper": {"reverse_of": "paper__cites__paper", "num_edges": n}}
    assert meta["canonical_etypes"]["paper__rev_cites__paper"]["num_edges"] == n
    assert load_partition_meta(out)["fingerprint"]["options"]["add_reverse_edges"] is True
    counts = {}
    for part in range(2):
        g, _, _, gpb, _, _, _ = dgl.distributed.load_partition(str(out / "td.json"), part)
        inner = g.edata["inner_edge"].bool()
        for i, c in enumerate(gpb.canonical_etypes):
            counts[c] = counts.get(c, 0) + int(((g.edata[dgl.ETYPE] == i) & inner).sum())
    assert counts == {CITES: n, REV: n}
    # the option is part of the inputs' fingerprint: turning it off makes the partitions stale
    off = PartitionOptions(**{**opts.__dict__, "add_reverse_edges": False})
    assert fingerprint_changes(out, tiny_directed_dir, opts) == []
    assert fingerprint_changes(out, tiny_directed_dir, off) == [
        "option add_reverse_edges True -> False"]


def test_off_keeps_the_tag_relations(tmp_path, tiny_directed_dir, tiny_bert_dir):
    opts = PartitionOptions(num_parts=1, model=str(tiny_bert_dir), max_seq_len=16,
                            graph_name="td1", add_reverse_edges=False)
    meta = partition_tag(tiny_directed_dir, tmp_path / "p", opts, progress=False)
    assert list(meta["canonical_etypes"]) == ["paper__cites__paper"]
    assert meta["reverse_edges"] is None
