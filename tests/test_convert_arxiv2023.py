"""The arXiv-2023 converter (gzip CSVs -> TAG): the real release's counts, and clear errors."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from conftest import SHARED
from partition.converters.arxiv2023 import convert_arxiv2023, main
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


def _sets(tag):
    split = tag.nodes["paper"].split
    return [set(np.flatnonzero(split == SPLIT_CODE[s]).tolist()) for s in ("train", "val", "test")]


def test_random_split_is_60_20_20_of_all_labelled_nodes(tmp_path):
    _release(tmp_path, titles=[f"title {i}" for i in range(53)])
    tag, counts = convert_arxiv2023(str(tmp_path), split="random", seed=0)
    train, val, test = _sets(tag)
    assert (len(train), len(val), len(test)) == (31, 10, 12)  # floor(0.6n), floor(0.2n), the rest
    assert (counts["train"], counts["val"], counts["test"], counts["labelled"]) == (31, 10, 12, 53)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(53))  # every labelled node, not only the fixed split's


def test_random_split_is_seeded(tmp_path):
    _release(tmp_path, titles=[f"title {i}" for i in range(40)])
    a, b, c = (convert_arxiv2023(str(tmp_path), split="random", seed=s)[0] for s in (7, 7, 8))
    assert np.array_equal(a.nodes["paper"].split, b.nodes["paper"].split)
    assert not np.array_equal(a.nodes["paper"].split, c.nodes["paper"].split)
    assert [len(x) for x in _sets(c)] == [24, 8, 8]


def test_fixed_split_is_unchanged_and_default(tmp_path):
    _release(tmp_path, titles=[f"title {i}" for i in range(10)], split_ids="0\n3\n")
    tag, counts = convert_arxiv2023(str(tmp_path), str(tmp_path / "tag"))
    fixed, counts_seeded = convert_arxiv2023(str(tmp_path), split="fixed", seed=5)
    assert counts == counts_seeded == {"nodes": 10, "edges": 2, "self_loops_removed": 0,
                                       "duplicate_edges_removed": 0, "classes": 2,
                                       "train": 2, "val": 0, "test": 0}
    assert np.array_equal(tag.nodes["paper"].split, fixed.nodes["paper"].split)
    assert _sets(tag)[0] == {0, 3}
    meta = json.loads((tmp_path / "tag" / "metadata.json").read_text())
    assert "split" not in meta and meta["name"] == "arxiv_2023"


def test_random_split_metadata_and_cli(tmp_path, capsys):
    _release(tmp_path, titles=[f"title {i}" for i in range(20)])
    main(["--src", str(tmp_path), "--out", str(tmp_path / "tag"), "--split", "random", "--seed", "3"])
    counts = json.loads(capsys.readouterr().out)
    assert (counts["train"], counts["val"], counts["test"], counts["labelled"]) == (12, 4, 4, 20)
    meta = json.loads((tmp_path / "tag" / "metadata.json").read_text())
    assert meta["split"] == {"kind": "random", "seed": 3, "fractions": [0.6, 0.2, 0.2]}
    tag = read_tag(tmp_path / "tag")  # a valid TAG, the written split is the seeded one
    assert np.array_equal(tag.nodes["paper"].split,
                          convert_arxiv2023(str(tmp_path), split="random", seed=3)[0].nodes["paper"].split)


def test_unknown_split_is_refused(tmp_path):
    _release(tmp_path)
    with pytest.raises(ValueError, match="unknown split 'time'"):
        convert_arxiv2023(str(tmp_path), split="time")


@needs_arxiv
def test_real_release_random_split_sizes():
    tag, counts = convert_arxiv2023(str(ARXIV), split="random", seed=0)
    assert (counts["train"], counts["val"], counts["test"], counts["labelled"]) == (20320, 6773, 6775, 33868)
    assert sum(map(len, _sets(tag))) == 33868
