"""Link-prediction hold-out: no val/test target edge (nor its reverse) in any partition, and
the saved evaluation edges/negatives are exactly the held-out ones, filtered."""
from __future__ import annotations


import dgl
import numpy as np
import pytest
import torch

from partition.build import PartitionOptions, load_holdout, partition_tag
from partition.holdout import filtered_negatives, find_reverse, hold_out
from partition.tag import SPLIT_CODE, TAGFormatError, read_tag

LP = "question__tagged__tag"


@pytest.fixture(scope="module")
def lp_parts(tmp_path_factory, tiny_hetero_dir, tiny_bert_dir):
    out = tmp_path_factory.mktemp("lp") / "parts"
    opts = PartitionOptions(num_parts=2, method="metis", model=str(tiny_bert_dir), max_seq_len=16,
                            graph_name="th", holdout_etypes=[LP], eval_negatives=3)
    meta = partition_tag(tiny_hetero_dir, out, opts, progress=False)
    return out, meta


def _edges_in_partitions(out, cetype):
    """All (src, dst) pairs of ``cetype`` over both partitions, in the TAG's user ids."""
    orig = {nt: np.load(out / "orig_ids" / f"{nt}.npy") for nt in ("question", "tag")}
    pairs = set()
    for part in range(2):
        g, _, _, gpb, _, _, _ = dgl.distributed.load_partition(str(out / "th.json"), part)
        # partition graphs are homogeneous; keep this partition's own (inner) edges of cetype
        etype_id = gpb.canonical_etypes.index(cetype)
        mask = (g.edata[dgl.ETYPE] == etype_id) & g.edata["inner_edge"].bool()
        src, dst = g.find_edges(torch.nonzero(mask).squeeze(1))
        gsrc, gdst = g.ndata[dgl.NID][src], g.ndata[dgl.NID][dst]
        s_t, s_local = gpb.map_to_per_ntype(gsrc)
        d_t, d_local = gpb.map_to_per_ntype(gdst)
        assert set(s_t.tolist()) <= {gpb.ntypes.index(cetype[0])}
        for a, b in zip(s_local.tolist(), d_local.tolist()):
            pairs.add((int(orig[cetype[0]][a]), int(orig[cetype[2]][b])))
    return pairs


def test_val_test_edges_and_reverses_leave_the_graph(lp_parts, tiny_hetero_dir):
    out, meta = lp_parts
    tag = read_tag(tiny_hetero_dir)
    e = tag.edges[("question", "tagged", "tag")]
    qid, tid = tag.nodes["question"].ids, tag.nodes["tag"].ids
    held = {(int(qid[s]), int(tid[d])) for s, d, sp in zip(e.src, e.dst, e.split)
            if sp in (SPLIT_CODE["val"], SPLIT_CODE["test"])}
    train = {(int(qid[s]), int(tid[d])) for s, d, sp in zip(e.src, e.dst, e.split)
             if sp == SPLIT_CODE["train"]}
    assert len(held) == meta["holdout"][LP]["val"] + meta["holdout"][LP]["test"] > 0
    forward = _edges_in_partitions(out, ("question", "tagged", "tag"))
    reverse = {(q, t) for t, q in _edges_in_partitions(out, ("tag", "rev_tagged", "question"))}
    assert forward == train and reverse == train  # nothing held out, nothing else lost
    assert not forward & held and not reverse & held
    assert meta["holdout"][LP]["reverse"] == "tag__rev_tagged__question"
    assert meta["holdout"][LP]["removed_reverse"] == len(held)
    # other relations are untouched
    assert meta["canonical_etypes"]["user__asks__question"]["num_edges"] == 40


def test_saved_eval_edges_and_filtered_negatives(lp_parts, tiny_hetero_dir):
    out, meta = lp_parts
    tag = read_tag(tiny_hetero_dir)
    e = tag.edges[("question", "tagged", "tag")]
    qid, tid = tag.nodes["question"].ids, tag.nodes["tag"].ids
    true_tags = {}
    for s, d in zip(e.src, e.dst):  # every split: negatives are filtered against all of them
        true_tags.setdefault(int(qid[s]), set()).add(int(tid[d]))
    orig_q = np.load(out / "orig_ids" / "question.npy")
    orig_t = np.load(out / "orig_ids" / "tag.npy")
    z = load_holdout(out, LP)
    for split in ("val", "test"):
        want = {(int(qid[s]), int(tid[d])) for s, d, sp in zip(e.src, e.dst, e.split)
                if sp == SPLIT_CODE[split]}
        got = list(zip(orig_q[z[f"{split}_src"]].tolist(), orig_t[z[f"{split}_dst"]].tolist()))
        assert sorted(got) == sorted(want)
        neg = z[f"{split}_neg"]
        assert neg.shape == (len(got), 3)
        for (q, _), row in zip(got, neg):
            tags = [int(orig_t[n]) for n in row if n >= 0]
            assert len(set(tags)) == len(tags) == 3  # 6 tags, at most 3 true: 3 distinct negatives
            assert not set(tags) & true_tags[q]
    assert meta["holdout"][LP]["padded_negatives"] == 0


def test_filtered_negatives_padding_and_rejection_mode(monkeypatch):
    import partition.holdout as ho

    rng = np.random.default_rng(0)
    src = np.array([0, 1])
    # node 0 is linked to 3 of 4 destinations: one negative possible, the rest padded
    true_keys = np.array(sorted([0 * 4 + 0, 0 * 4 + 1, 0 * 4 + 2, 1 * 4 + 3]))
    neg = filtered_negatives(src, true_keys, 4, 3, rng)
    assert neg[0].tolist() == [3, -1, -1]
    assert sorted(neg[1].tolist()) == [0, 1, 2]
    monkeypatch.setattr(ho, "EXACT_SAMPLING_LIMIT", 0)  # large-graph path: with replacement
    big = filtered_negatives(np.arange(50), np.array([i * 1000 + i for i in range(50)]), 1000, 20,
                             rng)
    assert big.shape == (50, 20) and (big >= 0).all()
    assert not (big == np.arange(50)[:, None]).any()


def test_holdout_errors_and_reverse_lookup(tiny_hetero_dir, tiny_tag_dir):
    tag = read_tag(tiny_hetero_dir)
    assert find_reverse(tag, ("question", "tagged", "tag")) == ("tag", "rev_tagged", "question")
    assert find_reverse(tag, ("tag", "rev_tagged", "question")) == ("question", "tagged", "tag")
    assert find_reverse(read_tag(tiny_tag_dir), ("paper", "cites", "paper")) == ("paper", "cites", "paper")
    with pytest.raises(TAGFormatError, match=r"edges/user__asks__question\.parquet: link "
                                             r"prediction on user__asks__question needs a 'split'"):
        hold_out(tag, ("user", "asks", "question"), 3, 0)
    from partition.holdout import parse_etype

    with pytest.raises(TAGFormatError, match="'question__cites__tag' is not an edge type"):
        parse_etype("question__cites__tag", tag)


def test_self_reverse_relation_drops_both_directions(tiny_tag_dir):
    """Cora-style: one relation holds both directions; a held-out (u, v) also removes (v, u)."""
    from partition.tag_write import random_split

    tag = read_tag(tiny_tag_dir)
    c = ("paper", "cites", "paper")
    e = tag.edges[c]
    e.split = random_split(e.num_edges, (0.8, 0.1, 0.1), 3)
    new, held, info = hold_out(tag, c, 5, 0)
    kept = set(zip(new.edges[c].src.tolist(), new.edges[c].dst.tolist()))
    for split in ("val", "test"):
        for u, v in zip(held[split].src.tolist(), held[split].dst.tolist()):
            assert (u, v) not in kept and (v, u) not in kept
    assert info["reverse"] == "paper__cites__paper" and info["removed_reverse"] > 0
    # orig_row still points at each kept edge's row of the Parquet file
    rows = new.edges[c].orig_row
    assert np.array_equal(e.src[rows], new.edges[c].src) and np.array_equal(e.dst[rows], new.edges[c].dst)
