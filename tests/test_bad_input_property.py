"""Property: any small TAG, however broken, gives a clear one-line error or correct partitions;
never a traceback, never data loss (issue 13). Cheap on purpose: few examples, the tiny BERT's
tokenizer, the random method."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bad_input_helpers import leftovers, run_partition, snapshot, write_raw_tag

DEFECTS = ["none", "duplicate id", "dangling edge", "label out of range", "float label",
           "empty text", "control text", "no text column", "no id column", "string ids",
           "bad split", "null id", "no edges", "empty node table"]
WORDS = ["alpha", "beta", "gamma", "delta"]


@st.composite
def broken_tags(draw):
    """(nodes, edges, metadata, defect): a one-node-type TAG with at most one defect."""
    defect = draw(st.sampled_from(DEFECTS))
    n = 0 if defect == "empty node table" else draw(st.integers(2, 8))
    ids = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n, unique=True))
    text = [" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3)))
            for _ in range(n)]
    label = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    split = draw(st.lists(st.sampled_from(["train", "val", "test", None]), min_size=n,
                          max_size=n))
    m = 0 if n == 0 or defect == "no edges" else draw(st.integers(1, 10))
    src = [ids[draw(st.integers(0, n - 1))] for _ in range(m)]
    dst = [ids[draw(st.integers(0, n - 1))] for _ in range(m)]
    row = draw(st.integers(0, max(n - 1, 0)))
    if defect == "duplicate id":
        ids[row] = ids[(row + 1) % n]
    elif defect == "dangling edge" and m:
        dst[0] = 10_000
    elif defect == "label out of range":
        label[row] = 7
    elif defect == "empty text":
        text[row] = "   "
    elif defect == "control text":
        text[row] = "\x01\x02"
    elif defect == "bad split":
        split[row] = "training"
    nodes = {"id": pa.array(ids, pa.int64()), "text": pa.array(text, pa.string()),
             "label": pa.array(label, pa.int64()), "split": pa.array(split, pa.string())}
    if defect == "float label":
        nodes["label"] = pa.array([float(x) for x in label], pa.float64())
    if defect == "no text column":
        del nodes["text"]  # valid: a text-less node type
    if defect == "no id column":
        del nodes["id"]
    if defect == "string ids":
        nodes["id"] = pa.array([str(i) for i in ids], pa.string())
    if defect == "null id":
        nodes["id"] = pa.array([None if i == row else x for i, x in enumerate(ids)], pa.int64())
    edges = {"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}
    meta = {"name": "prop", "node_types": {"paper": {"classes": ["a", "b", "c"]}}}
    return nodes, edges, meta, defect


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tag=broken_tags(), num_parts=st.sampled_from([1, 2]), rerun_over_old=st.booleans())
def test_clear_error_or_correct_partitions(tag, num_parts, rerun_over_old, tiny_bert_dir,
                                           capsys):
    nodes, edges, meta, defect = tag
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = write_raw_tag(tmp / "tag", {"paper": nodes}, {"paper__cites__paper": edges},
                             meta=meta)
        out = tmp / "parts"
        if rerun_over_old:  # a user folder where the partitions should go must survive
            out.mkdir()
            (out / "keep.txt").write_text("user data")
        before, before_tag = snapshot(tmp), snapshot(root)
        code, _, err = run_partition(
            ["--tag", str(root), "--out", str(out), "--num-parts", str(num_parts), "--method",
             "random", "--model", str(tiny_bert_dir), "--max-seq-len", "8", "--graph-name", "p"],
            capsys)
        assert "Traceback" not in err
        assert leftovers(tmp) == []
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("tokenize ")]
        event(f"{defect}: {'partitioned' if code == 0 else 'error'}")
        if code != 0:
            assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
            assert snapshot(tmp) == before  # nothing written, nothing lost
            return
        assert not rerun_over_old, "a folder with user files was replaced"
        assert defect in ("none", "no text column") and lines == [], (defect, err)
        written = json.loads((out / "lmgnn_meta.json").read_text())
        assert written["ntypes"]["paper"]["num_nodes"] == len(nodes["id"])
        assert written["canonical_etypes"]["paper__cites__paper"]["num_edges"] == len(edges["src"])
        orig = np.load(out / "orig_ids" / "paper.npy")
        assert sorted(orig.tolist()) == sorted(nodes["id"].to_pylist())
        assert snapshot(root) == before_tag  # the TAG itself untouched
