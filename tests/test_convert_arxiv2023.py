"""The arXiv-2023 converter (gzip CSVs -> TAG): the real release's counts, and clear errors."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from conftest import SHARED
from partition.converters.arxiv2023 import convert_arxiv2023
from partition.tag import SPLIT_CODE, read_tag

ARXIV = SHARED / "data" / "arxiv_2023"
needs_arxiv = pytest.mark.skipif(not (ARXIV / "raw").exists(), reason=f"{ARXIV} not present")


@needs_arxiv
def test_real_release_counts_split_and_direction(tmp_path):
    _, counts = convert_arxiv2023(str(ARXIV), str(tmp_path / "tag"))
    assert counts == {"nodes": 33868, "edges": 305655, "self_loops_removed": 17,
                      "duplicate_edges_removed": 0, "classes": 39,
                      "train": 19461, "val": 4682, "test": 668}
    tag = read_tag(tmp_path / "tag")  # a valid TAG
    paper = tag.nodes["paper"]
    assert paper.text[0] == "Causal models in string diagrams" and paper.classes[:2] == ["cs.AI", "cs.AR"]
    assert paper.classes[paper.label[0]] == "cs.LO" and paper.classes[paper.label[1]] == "cs.LG"
    assert [(paper.split == SPLIT_CODE[s]).sum() for s in ("train", "val", "test")] == [19461, 4682, 668]
    cites = tag.edges[("paper", "cites", "paper")]
    with gzip.open(ARXIV / "raw" / "edges.csv.gz", "rt") as f:
        first = tuple(int(x) for x in f.readlines()[1].split(","))
    assert first in set(zip(cites.src.tolist(), cites.dst.tolist()))  # source cites target
    assert not np.any(cites.src == cites.dst)


def _release(root, titles=("a title", "b title", "c title"), edges="0,1\n1,2\n", split_ids="0\n"):
    for sub in ("raw", "split"):
        (root / sub).mkdir(parents=True, exist_ok=True)

    def put(path, text):
        with gzip.open(root / path, "wt") as f:
            f.write(text)

    put("raw/titles.csv.gz", "titles\n" + "".join(f'"{t}"\n' for t in titles))
    put("raw/labels.csv.gz", "labels\n" + "".join(f"cs.{'AB'[i % 2]}\n" for i in range(len(titles))))
    put("raw/edges.csv.gz", "source,target\n" + edges)
    for name, col in (("train", "train_id"), ("valid", "val_id"), ("test", "test_id")):
        put(f"split/{name}.csv.gz", f"{col}\n" + (split_ids if name == "train" else ""))


def test_small_release_converts(tmp_path):
    _release(tmp_path)
    tag, counts = convert_arxiv2023(str(tmp_path))
    assert counts["nodes"] == 3 and counts["edges"] == 2 and counts["train"] == 1
    assert tag.nodes["paper"].classes == ["cs.A", "cs.B"]


@pytest.mark.parametrize("edges, split_ids, missing, message", [
    ("0,7\n", "0\n", None, "edges.csv.gz: node ids must be in [0, 3)"),
    ("0,1\n", "5\n", None, "train.csv.gz: node ids must be in [0, 3)"),
    ("0,1\n", "0\n", "raw/labels.csv.gz", "labels.csv.gz: arxiv-2023 file not found"),
])
def test_bad_release_is_one_clear_error(tmp_path, edges, split_ids, missing, message):
    _release(tmp_path, edges=edges, split_ids=split_ids)
    if missing:
        (tmp_path / missing).unlink()
    with pytest.raises((ValueError, FileNotFoundError), match=message.replace("[", r"\[").replace(")", r"\)")):
        convert_arxiv2023(str(tmp_path))
