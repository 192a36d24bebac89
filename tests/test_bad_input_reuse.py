"""Partition reuse (the inputs' fingerprint) and the task-vs-TAG schema check (issue 13)."""
from __future__ import annotations

import os
from dataclasses import asdict

import pyarrow as pa
import pytest

from bad_input_helpers import write_raw_tag
from partition.build import PartitionOptions, fingerprint_changes, partition_tag
from partition.tag_write import write_tag
from partition.task_check import TaskSchemaError, check_task_against_tag


@pytest.fixture()
def parted(tmp_path, tiny_bert_dir):
    """A fresh copy of the tiny TAG and its partitions: (tag dir, part dir, options)."""
    from conftest import make_tiny_tag

    tag = tmp_path / "tag"
    write_tag(make_tiny_tag(), tag)
    opts = PartitionOptions(num_parts=1, method="random", model=str(tiny_bert_dir),
                            max_seq_len=16, graph_name="tiny")
    partition_tag(tag, tmp_path / "parts", opts, progress=False)
    return tag, tmp_path / "parts", opts


def test_fingerprint_matches_then_names_each_change(parted):
    tag, parts, opts = parted
    assert fingerprint_changes(parts, tag, opts) == []
    assert fingerprint_changes(parts, tag, asdict(opts)) == []  # a dict works too
    other = PartitionOptions(**{**asdict(opts), "max_seq_len": 8, "holdout_seed": 3})
    assert fingerprint_changes(parts, tag, other) == ["option holdout_seed 0 -> 3",
                                                      "option max_seq_len 16 -> 8"]
    node_file = tag / "nodes" / "paper.parquet"
    size = node_file.stat().st_size
    with open(node_file, "ab") as f:
        f.write(b"x")
    st = (tag / "metadata.json").stat()  # only touched: same bytes, not a change
    os.utime(tag / "metadata.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    write_raw_tag(tag, {}, {"paper__likes__paper": {"src": pa.array([1000]),
                                                    "dst": pa.array([1007])}})
    assert fingerprint_changes(parts, tag, opts) == [
        "new file edges/paper__likes__paper.parquet",
        f"nodes/paper.parquet changed (size {size} -> {size + 1})"]


def test_an_edit_copied_back_with_its_old_size_and_mtime_is_a_change(parted):
    """``cp -p`` / ``rsync -a`` / ``tar x`` of an edited table: same size, old mtime, other
    labels. The fingerprint of sizes and times took it for the partitioned one."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tag, parts, opts = parted
    path = tag / "nodes" / "paper.parquet"
    st, before = path.stat(), path.read_bytes()
    table = pq.read_table(path)
    flipped = pc.subtract(pa.scalar(1, pa.int64()), table.column("label"))
    pq.write_table(table.set_column(table.column_names.index("label"), "label", flipped), path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert path.read_bytes() != before
    assert fingerprint_changes(parts, tag, opts) == ["nodes/paper.parquet changed (content)"]


def test_a_fingerprint_without_content_hashes_is_a_change(parted):
    import json

    tag, parts, opts = parted
    meta = json.loads((parts / "lmgnn_meta.json").read_text())
    for entry in meta["fingerprint"]["files"].values():
        del entry["sha256"]  # what versions before content hashing recorded
    (parts / "lmgnn_meta.json").write_text(json.dumps(meta))
    assert fingerprint_changes(parts, tag, opts) == [
        f"{parts / 'lmgnn_meta.json'} records the TAG files' sizes and times but not their "
        "content (sha256; partitioned by an older version)"]


def test_an_unreadable_tag_file_is_one_line_naming_it(parted):
    from partition.tag import TAGFormatError

    tag, parts, opts = parted
    (tag / "nodes" / "loop.parquet").symlink_to("loop.parquet")
    with pytest.raises(TAGFormatError) as info:
        fingerprint_changes(parts, tag, opts)
    assert str(info.value) == (f"{tag / 'nodes' / 'loop.parquet'}: cannot read it (Too many "
                               "levels of symbolic links)")


def test_fingerprint_of_no_or_old_partitions(parted, tmp_path):
    tag, parts, opts = parted
    assert fingerprint_changes(tmp_path / "nowhere", tag, opts) == [
        f"no partitions in {tmp_path / 'nowhere'} (lmgnn_meta.json not found)"]
    (parts / "lmgnn_meta.json").write_text('{"options": {}}')  # before fingerprints existed
    [line] = fingerprint_changes(parts, tag, opts)
    assert "records no input fingerprint" in line


def test_removed_tag_file_is_a_change(parted):
    tag, parts, opts = parted
    (tag / "edges" / "paper__cites__paper.parquet").unlink()
    assert fingerprint_changes(parts, tag, opts) == [
        "file edges/paper__cites__paper.parquet removed"]


@pytest.mark.parametrize("kind,ntype,etype,fragment", [
    ("node_classification", "paper", "", None),
    ("node_classification", "venue", "", "targets node type 'venue', which the TAG"),
    ("node_classification", "user", "", "needs column(s) ['label', 'split']"),
    ("node_classification", "answer", "", "column 'label' must be integer"),
    ("node_classification", "empty", "", "finds no rows"),
    ("edge_classification", "", "question__has_answer__answer", None),
    ("edge_classification", "", "question__tagged__tag", "needs column(s) ['label']"),
    ("edge_classification", "", "", "targets relation ''"),
    ("link_prediction", "", "question__tagged__tag", None),
    ("link_prediction", "", "user__asks__question", "needs column(s) ['split']"),
    ("link_prediction", "", "question__asks__user", "known: ['question__has_answer__answer'"),
    ("regression", "paper", "", "task kind 'regression'"),
])
def test_task_against_tag_schema(tmp_path, kind, ntype, etype, fragment):
    split = ["train", "val", "test"]
    tag = write_raw_tag(tmp_path, {
        "paper": {"id": [1, 2, 3], "text": ["a", "b", "c"], "label": [0, 1, 0], "split": split},
        "user": {"id": [1, 2, 3]},
        "answer": {"id": [1, 2, 3], "label": [0.5, 1.0, 0.0], "split": split},
        "empty": pa.table({"id": pa.array([], pa.int64()), "label": pa.array([], pa.int64()),
                           "split": pa.array([], pa.string())}),
    }, {
        "question__has_answer__answer": {"src": [1], "dst": [2], "label": [1], "split": ["val"]},
        "question__tagged__tag": {"src": [1], "dst": [2], "split": ["train"]},
        "user__asks__question": {"src": [1], "dst": [2]},
    })
    if fragment is None:
        check_task_against_tag(tag, kind, ntype, etype)
        return
    with pytest.raises(TaskSchemaError) as info:
        check_task_against_tag(tag, kind, ntype, etype)
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
