"""Bad input to ``python -m partition``: one line on stderr, exit code 2, user files intact,
nothing half-written; degenerate but valid input works (issue 13)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from bad_input_helpers import (assert_one_line_error, leftovers, run_partition, snapshot,
                               write_raw_tag)

IDS = pa.array([10, 11, 12, 13], pa.int64())
TEXT = ["alpha apple", "beta banana", "amber alpha", "bronze beta"]
EDGES = {"src": pa.array([10, 11, 12], pa.int64()), "dst": pa.array([11, 12, 13], pa.int64())}
NO_EDGES = {"src": pa.array([], pa.int64()), "dst": pa.array([], pa.int64())}


def small(**node_cols):
    return {"paper": {"id": IDS, "text": TEXT, **node_cols}}


# name -> (nodes, edges, metadata or raw metadata text, extra CLI args, fragments of the line)
TAG_CASES = {
    "node id beyond int64": (
        {"paper": {"id": pa.array([1, 2, 3, 2 ** 64 - 1], pa.uint64()), "text": TEXT}},
        {"paper__cites__paper": {"src": pa.array([1], pa.uint64()),
                                 "dst": pa.array([2], pa.uint64())}},
        None, [], ["nodes/paper.parquet", "column 'id' value 18446744073709551615 at row 3",
                   "int64"]),
    "metadata is a list": (small(), {"paper__cites__paper": EDGES}, "[1, 2]", [],
                           ["metadata.json", "top level: expected a mapping"]),
    "classes not a list": (small(label=[0, 1, 0, 1]), {"paper__cites__paper": EDGES},
                           json.dumps({"node_types": {"paper": {"classes": "ab"}}}), [],
                           ["metadata.json", "node_types.paper.classes: expected a list"]),
    "class name not a string": (small(label=[0, 1, 0, 1]), {"paper__cites__paper": EDGES},
                                json.dumps({"node_types": {"paper": {"classes": [0, 1]}}}), [],
                                ["metadata.json", "node_types.paper.classes[0]: expected str"]),
    "metadata not JSON": (small(), {"paper__cites__paper": EDGES}, "{name: x", [],
                          ["metadata.json", "invalid JSON"]),
    "text of control characters": (
        {"paper": {"id": IDS, "text": ["alpha", "\x00\x01\x7f", "beta", "gamma"]}},
        {"paper__cites__paper": EDGES}, None, [],
        ["nodes/paper.parquet", "node id 11 (row 1) has an empty text"]),
    "text of whitespace": (
        {"paper": {"id": IDS, "text": ["alpha", "beta", " \t\n ", "gamma"]}},
        {"paper__cites__paper": EDGES}, None, [],
        ["nodes/paper.parquet", "node id 12 (row 2) has an empty text"]),
    "huge label, no classes": (small(label=[0, 1, 0, 2 ** 40]), {"paper__cites__paper": EDGES},
                               None, [], ["node id 13 (row 3) has label 1099511627776",
                                          "below 100000"]),
    "no edge at all": (small(), {"paper__cites__paper": NO_EDGES}, None, [],
                       ["no edge in any relation"]),
    "edge into an empty node type": (
        {**small(), "venue": {"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}},
        {"paper__cites__paper": EDGES, "paper__at__venue": EDGES}, None, [],
        ["edges/paper__at__venue.parquet", "row 0 column 'dst' names venue id 11"]),
    "duplicate column": (
        {"paper": pa.Table.from_arrays([IDS, IDS, pa.array(TEXT)], names=["id", "id", "text"])},
        {"paper__cites__paper": EDGES}, None, [], ["nodes/paper.parquet"]),
    "split not a string": (small(split=[1, 2, 3, 1]), {"paper__cites__paper": EDGES}, None, [],
                           ["nodes/paper.parquet", "column 'split' must be string"]),
    "more parts than nodes": (small(), {"paper__cites__paper": EDGES}, None,
                              ["--num-parts", "5"], ["num_parts (--num-parts) 5", "4 nodes"]),
    "unknown hold-out relation": (small(), {"paper__cites__paper": EDGES}, None,
                                  ["--holdout-etype", "paper__likes__paper"],
                                  ["'paper__likes__paper' is not an edge type"]),
}

OPTION_CASES = {
    "num parts 0": (["--num-parts", "0"], ["num_parts (--num-parts) must be an integer >= 1"]),
    "num parts negative": (["--num-parts", "-3"], ["num_parts (--num-parts)", "got -3"]),
    "num parts not a number": (["--num-parts", "two"], ["--num-parts", "invalid int value"]),
    "empty graph name": (["--graph-name", ""], ["graph_name (--graph-name)", "got ''"]),
    "graph name with /": (["--graph-name", "a/b"], ["graph_name (--graph-name)", "'a/b'"]),
    "graph name ..": (["--graph-name", ".."], ["graph_name (--graph-name)", "'..'"]),
    "max seq len 1": (["--max-seq-len", "1"], ["max_seq_len (--max-seq-len) must be an integer "
                                               ">= 2"]),
    "max seq len beyond the model": (["--max-seq-len", "100"],
                                     ["max_seq_len (--max-seq-len) 100", "(64 positions)"]),
    "mistyped model id": (["--model", "bert-base-uncasd"],
                          ["model 'bert-base-uncasd' does not exist"]),
    "missing model folder": (["--model", "./no/such/model"],
                             ["model path './no/such/model' does not exist"]),
    "eval negatives 0": (["--eval-negatives", "0"], ["eval_negatives (--eval-negatives)"]),
    "method unknown": (["--method", "spectral"], ["--method", "invalid choice"]),
}


def _args(tag: Path, out: Path, model, *extra) -> list:
    return ["--tag", str(tag), "--out", str(out), "--num-parts", "1", "--method", "random",
            "--model", str(model), "--max-seq-len", "16", "--graph-name", "g", *extra]


@pytest.mark.parametrize("case", list(TAG_CASES))
def test_bad_tag_is_one_line(case, tmp_path, tiny_bert_dir, capsys):
    nodes, edges, meta, extra, fragments = TAG_CASES[case]
    tag = write_raw_tag(tmp_path / "tag", nodes, edges, raw_meta=meta)
    before = snapshot(tag)
    code, _, err = run_partition(_args(tag, tmp_path / "parts", tiny_bert_dir, *extra), capsys)
    assert_one_line_error(code, err, *fragments)
    assert snapshot(tag) == before
    assert not (tmp_path / "parts").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_bad_option_is_one_line(case, tmp_path, tiny_tag_dir, tiny_bert_dir, capsys):
    extra, fragments = OPTION_CASES[case]
    t0 = time.time()
    code, _, err = run_partition(_args(tiny_tag_dir, tmp_path / "parts", tiny_bert_dir, *extra),
                                 capsys)
    assert_one_line_error(code, err, *fragments)
    assert time.time() - t0 < 10  # answered before tokenising, no hub retries
    assert not (tmp_path / "parts").exists() and leftovers(tmp_path) == []


def _out_file(tmp, tag):
    (tmp / "notes.txt").write_text("mine")
    return tmp / "notes.txt", "notes.txt: is a file, not a folder"


def _out_user_folder(tmp, tag):
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("years of work")
    return tmp / "mine", "holds files the partitioner did not write"


def _out_below_file(tmp, tag):
    (tmp / "notes.txt").write_text("mine")
    return tmp / "notes.txt" / "parts", "is a file, not a folder"


OUT_CASES = {
    "out is an existing file": _out_file,
    "out holds user files": _out_user_folder,
    "out below a file": _out_below_file,
    "out is the TAG folder": lambda tmp, tag: (tag, "is the TAG folder"),
    "out inside the TAG folder": lambda tmp, tag: (tag / "parts", "is inside the TAG folder"),
    "out contains the TAG folder": lambda tmp, tag: (tmp, "contains the TAG folder"),
}


@pytest.mark.parametrize("case", list(OUT_CASES))
def test_out_folder_never_loses_user_data(case, tmp_path, tiny_bert_dir, capsys):
    tag = write_raw_tag(tmp_path / "tag", small(), {"paper__cites__paper": EDGES})
    out, fragment = OUT_CASES[case](tmp_path, tag)
    before = snapshot(tmp_path)
    code, _, err = run_partition(_args(tag, out, tiny_bert_dir), capsys)
    assert_one_line_error(code, err, str(out), fragment)
    assert snapshot(tmp_path) == before  # every user file and the TAG untouched
    assert leftovers(tmp_path) == [] and not (tag / "parts").exists()


def test_out_parent_not_writable(tmp_path, tiny_tag_dir, tiny_bert_dir, capsys):
    if os.geteuid() == 0:  # root writes anywhere on a normal file system; sysfs refuses
        if not Path("/sys/kernel").is_dir():
            pytest.skip("no /sys to stand in for an unwritable folder")
        out = Path("/sys/lmgnn-no-such-dir/parts")
    else:
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        out = tmp_path / "ro" / "parts"
    code, _, err = run_partition(_args(tiny_tag_dir, out, tiny_bert_dir), capsys)
    assert_one_line_error(code, err, str(out), "cannot write there")
    assert not out.parent.exists() or not out.exists()


def test_a_marked_partition_is_replaced_but_not_one_with_user_files(tmp_path, tiny_tag_dir,
                                                                    tiny_bert_dir, capsys):
    out = tmp_path / "parts"
    for _ in range(2):  # the second run replaces the first (it carries the marker)
        code, _, err = run_partition(_args(tiny_tag_dir, out, tiny_bert_dir), capsys)
        assert code == 0, err
        assert (out / ".lmgnn-partition").is_file() and (out / "g.json").is_file()
    (out / "my_notes.txt").write_text("keep me")
    code, _, err = run_partition(_args(tiny_tag_dir, out, tiny_bert_dir), capsys)
    assert_one_line_error(code, err, "not written by the partitioner", "my_notes.txt")
    assert (out / "my_notes.txt").read_text() == "keep me" and (out / "g.json").is_file()
    assert leftovers(tmp_path) == []


def test_empty_relation_and_node_type_are_left_out_with_a_note(tmp_path, tiny_bert_dir, capsys):
    nodes = {**small(label=[0, 1, 0, 1], split=["train", "val", "test", "train"]),
             "venue": {"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}}
    edges = {"paper__cites__paper": EDGES, "paper__likes__paper": NO_EDGES}
    tag = write_raw_tag(tmp_path / "tag", nodes, edges)
    code, out, err = run_partition(_args(tag, tmp_path / "parts", tiny_bert_dir), capsys)
    assert code == 0, err
    assert "edges/paper__likes__paper.parquet has no edges: relation left out" in out
    assert "nodes/venue.parquet has no rows: node type left out" in out
    meta = json.loads((tmp_path / "parts" / "lmgnn_meta.json").read_text())
    # the directed citations get their reverse (data.add_reverse_edges), the empty one none
    assert list(meta["ntypes"]) == ["paper"] and list(meta["canonical_etypes"]) == [
        "paper__cites__paper", "paper__rev_cites__paper"]
    assert meta["canonical_etypes"]["paper__cites__paper"]["num_edges"] == 3
    assert meta["reverse_edges"]["skipped"]["paper__likes__paper"] == "it has no edges"
    assert len(meta["left_out"]) == 2


def test_mistyped_model_is_refused_offline_at_once():
    from partition.tokenize import load_tokenizer, resolve_model_path

    for call in (resolve_model_path, load_tokenizer):
        t0 = time.time()
        with pytest.raises(FileNotFoundError, match="'sentence-transformers/all-MiniLM-L6-v3'"):
            call("sentence-transformers/all-MiniLM-L6-v3")
        assert time.time() - t0 < 1.0


def test_cached_hub_id_resolves_offline(tmp_path, monkeypatch, tiny_bert_dir):
    """An id already in the Hugging Face cache works without the network."""
    from huggingface_hub import constants

    from partition.tokenize import load_tokenizer, resolve_model_path

    repo = tmp_path / "hub" / "models--org--tiny"
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for f in Path(tiny_bert_dir).iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert Path(resolve_model_path("org/tiny")) == snap
    assert load_tokenizer("org/tiny").pad_token_id == 0


def test_the_real_command_exits_2_with_one_line(tmp_path, tiny_tag_dir):
    """The same through ``python -m partition`` in a subprocess: exit status and stderr."""
    proc = subprocess.run([sys.executable, "-m", "partition", "--tag", str(tiny_tag_dir),
                           "--out", str(tmp_path / "p"), "--num-parts", "0"],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert_one_line_error(proc.returncode, proc.stderr, "num_parts (--num-parts)")
    assert np.array_equal(sorted(os.listdir(tmp_path)), [])
