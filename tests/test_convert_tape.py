"""The TAPE .pt converter on the real Cora release, and the bundled copy's freshness."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import REPO, SHARED
from partition.converters.tape import CORA_CLASSES, convert_tape, low_label_split
from partition.tag import SPLIT_CODE, read_tag

CORA_PT = SHARED / "data" / "cora_tag" / "cora.pt"
needs_cora = pytest.mark.skipif(not CORA_PT.exists(), reason=f"{CORA_PT} not present")


@needs_cora
def test_cora_counts_and_bundle_is_fresh(tmp_path):
    tag, counts = convert_tape(str(CORA_PT), str(tmp_path / "cora"), classes=CORA_CLASSES, seed=0)
    assert counts == {"nodes": 2708, "edges": 10556, "duplicate_edges_removed": 302,
                      "self_loops_removed": 0, "train": 1624, "val": 541, "test": 543}
    fresh = read_tag(tmp_path / "cora")
    bundled = read_tag(REPO / "examples" / "cora" / "tag")
    a, b = fresh.nodes["paper"], bundled.nodes["paper"]
    assert a.text == b.text and np.array_equal(a.label, b.label) and np.array_equal(a.split, b.split)
    assert a.classes == b.classes == CORA_CLASSES
    ce = ("paper", "cites", "paper")
    assert np.array_equal(fresh.edges[ce].src, bundled.edges[ce].src)
    assert np.array_equal(fresh.edges[ce].dst, bundled.edges[ce].dst)
    # symmetric, no self loops (the RGCN adds its own self-loop term)
    e = fresh.edges[ce]
    pairs = set(zip(e.src.tolist(), e.dst.tolist()))
    assert all((d, s) in pairs for s, d in pairs) and all(s != d for s, d in pairs)
    assert np.bincount(a.label).tolist() == [180, 818, 298, 418, 351, 217, 426]


def test_bundled_cora_is_valid_and_seeded_60_20_20():
    tag = read_tag(REPO / "examples" / "cora" / "tag")
    split = tag.nodes["paper"].split
    assert [(split == SPLIT_CODE[s]).sum() for s in ("train", "val", "test")] == [1624, 541, 543]


def test_low_label_split_sizes():
    y = np.repeat(np.arange(7), 100)
    codes = low_label_split(y, 20, 500, 100, seed=0)
    assert all(((codes == SPLIT_CODE["train"]) & (y == c)).sum() == 20 for c in range(7))
    assert (codes == SPLIT_CODE["val"]).sum() == 500 and (codes == SPLIT_CODE["test"]).sum() == 60


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt: TAPE .pt file not found"):
        convert_tape(str(tmp_path / "nope.pt"))
