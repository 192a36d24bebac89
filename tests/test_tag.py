"""Parquet TAG reading, writing and its validation errors."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from partition.tag import SPLIT_CODE, TAGFormatError, read_tag
from partition.tag_write import random_split, write_tag


def _write(root, nodes=None, edges=None, meta=None):
    (root / "nodes").mkdir(parents=True, exist_ok=True)
    (root / "edges").mkdir(parents=True, exist_ok=True)
    nodes = nodes if nodes is not None else {
        "paper": {"id": [10, 20, 30], "text": ["a", "b", "c"], "label": [0, 1, None],
                  "split": ["train", "val", None]}}
    edges = edges if edges is not None else {"paper__cites__paper": {"src": [10, 20], "dst": [20, 30]}}
    for nt, cols in nodes.items():
        pq.write_table(pa.table(cols), root / "nodes" / f"{nt}.parquet")
    for name, cols in edges.items():
        pq.write_table(pa.table(cols), root / "edges" / f"{name}.parquet")
    if meta is not None:
        (root / "metadata.json").write_text(json.dumps(meta))
    return root


def test_read_valid_tag_maps_ids_to_rows(tmp_path):
    tag = read_tag(_write(tmp_path))
    p = tag.nodes["paper"]
    assert p.ids.tolist() == [10, 20, 30]
    assert p.label.tolist() == [0, 1, -1]
    assert p.split.tolist() == [SPLIT_CODE["train"], SPLIT_CODE["val"], 0]
    assert p.classes == ["0", "1"]
    e = tag.edges[("paper", "cites", "paper")]
    assert e.src.tolist() == [0, 1] and e.dst.tolist() == [1, 2]


def test_textless_node_type_reads_and_round_trips(tmp_path):
    """A node table without a text column is a text-less type (learnable embeddings)."""
    from partition.tag import iter_texts

    root = _write(tmp_path / "t", nodes={
        "paper": {"id": [10, 20], "text": ["a", "b"]},
        "venue": {"id": [5, 6], "label": [1, 0], "split": ["train", "test"]}},
        edges={"paper__in__venue": {"src": [10, 20], "dst": [6, 6]}})
    tag = read_tag(root)
    v = tag.nodes["venue"]
    assert not v.has_text and v.text is None and v.label.tolist() == [1, 0]
    assert tag.nodes["paper"].has_text and tag.edges[("paper", "in", "venue")].dst.tolist() == [1, 1]
    with pytest.raises(ValueError, match="node type 'venue' has no text column"):
        list(iter_texts(v))
    write_tag(tag, tmp_path / "copy")
    assert pq.read_table(tmp_path / "copy" / "nodes" / "venue.parquet").column_names == [
        "id", "label", "split"]
    assert not read_tag(tmp_path / "copy").nodes["venue"].has_text


def test_write_read_round_trip(tmp_path, tiny_tag_dir):
    tag = read_tag(tiny_tag_dir)
    write_tag(tag, tmp_path / "copy")
    again = read_tag(tmp_path / "copy")
    for nt in tag.nodes:
        a, b = tag.nodes[nt], again.nodes[nt]
        assert np.array_equal(a.ids, b.ids) and a.text == b.text
        assert np.array_equal(a.label, b.label) and np.array_equal(a.split, b.split)
        assert a.classes == b.classes
    for ce in tag.edges:
        assert np.array_equal(tag.edges[ce].src, again.edges[ce].src)
        assert np.array_equal(tag.edges[ce].dst, again.edges[ce].dst)


@pytest.mark.parametrize("nodes,edges,meta,message", [
    ({"paper": {"text": ["a", "b"], "label": [0, 1]}}, None, None, r"paper\.parquet: missing required column\(s\) \['id'\]"),
    ({"paper": {"id": [1, 2, 1], "text": ["a", "b", "c"]}}, {}, None, r"paper\.parquet: duplicate node id 1 at rows \[0, 2\]"),
    ({"paper": {"id": [1, 2], "text": ["a", "  "]}}, {}, None, r"paper\.parquet: node id 2 \(row 1\) has an empty text"),
    ({"paper": {"id": [1, 2], "text": ["a", None]}}, {}, None, r"node id 2 \(row 1\) has an empty text"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"], "label": [0, 7]}}, {},
     {"node_types": {"paper": {"classes": ["x", "y", "z"]}}},
     r"paper\.parquet: node id 2 \(row 1\) has label 7, outside the 3 declared classes"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"], "label": [0, -1]}}, {}, None, r"node id 2 \(row 1\) has label -1"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"], "split": ["train", "dev"]}}, {}, None,
     r"node id 2 \(row 1\) has split 'dev'"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"]}}, {"paper__cites__paper": {"src": [1, 2], "dst": [2, 99]}}, None,
     r"paper__cites__paper\.parquet: row 1 column 'dst' names paper id 99, which is not in nodes/paper\.parquet"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"]}}, {"paper__cites__author": {"src": [1], "dst": [2]}}, None,
     r"destination node type 'author' has no table nodes/author\.parquet"),
    ({"paper": {"id": [1, 2], "text": ["a", "b"]}}, {"paper_cites_paper": {"src": [1], "dst": [2]}}, None,
     r"edge file name must be <src_ntype>__<etype>__<dst_ntype>\.parquet"),
    ({"paper": {"id": [1.5, 2.0], "text": ["a", "b"]}}, {}, None, r"column 'id' must be integer"),
])
def test_bad_input_names_file_and_row(tmp_path, nodes, edges, meta, message):
    root = _write(tmp_path, nodes, edges, meta)
    if edges == {}:  # keep the TAG otherwise valid: one good edge file
        pq.write_table(pa.table({"src": [1], "dst": [2]}), root / "edges" / "paper__cites__paper.parquet")
    with pytest.raises(TAGFormatError, match=message):
        read_tag(root)


def test_missing_folder_and_tables(tmp_path):
    with pytest.raises(TAGFormatError, match="does not exist"):
        read_tag(tmp_path / "nope")
    (tmp_path / "nodes").mkdir()
    with pytest.raises(TAGFormatError, match="no <ntype>.parquet node tables"):
        read_tag(tmp_path)


def test_random_split_is_seeded_and_sized():
    a, b = random_split(100, (0.6, 0.2, 0.2), 3), random_split(100, (0.6, 0.2, 0.2), 3)
    assert np.array_equal(a, b)
    assert [(a == SPLIT_CODE[s]).sum() for s in ("train", "val", "test")] == [60, 20, 20]
    assert not np.array_equal(a, random_split(100, (0.6, 0.2, 0.2), 4))
    with pytest.raises(ValueError):
        random_split(10, (0.5, 0.5, 0.5), 0)


def test_streamed_texts_equal_loaded_texts(tiny_tag_dir):
    from partition.tag import iter_texts

    loaded = read_tag(tiny_tag_dir)
    streamed = read_tag(tiny_tag_dir, load_text=False)
    assert streamed.nodes["paper"].text is None
    assert list(iter_texts(streamed.nodes["paper"], batch_size=7)) == loaded.nodes["paper"].text
