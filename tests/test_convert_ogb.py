"""partition.converters.ogb on tiny hand-written OGB folders (same file layout and names as the
real releases, as ogb's DGL loaders read them), driven offline with no stdin."""
from __future__ import annotations

import gzip
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from partition.converters.ogb import NO_TEXT, check_files, convert_ogb, main
from partition.tag import SPLIT_CODE, read_tag

N = 10
# MAG paper ids, deliberately not in node order
PAPER_IDS = [9000017, 1200, 555555, 31, 77000001, 4242, 8, 100000000, 63, 2500]
MISSING = 6  # node whose paper id is absent from titleabs.tsv
EDGES = [(0, 1), (1, 2), (2, 0), (3, 4), (5, 3), (6, 7), (7, 8), (9, 0), (8, 9), (4, 6)]
LABELS = [3, 0, 1, 2, 3, 0, 1, 2, 3, 1]
SPLIT = {"train": [0, 2, 4, 6, 8], "valid": [1, 5], "test": [3, 9]}  # node 7: no split


def _gz(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write("".join(line + "\n" for line in lines))


def _graph_files(ds, year=True, label=True):
    raw = ds / "raw"
    _gz(raw / "edge.csv.gz", [f"{s},{d}" for s, d in EDGES])
    _gz(raw / "num-node-list.csv.gz", [str(N)])
    _gz(raw / "num-edge-list.csv.gz", [str(len(EDGES))])
    _gz(raw / "node-feat.csv.gz", [f"{i * 0.5},{-i * 0.25}" for i in range(N)])
    if label:
        _gz(raw / "node-label.csv.gz", [str(c) for c in LABELS])
    if year:
        _gz(raw / "node_year.csv.gz", [str(2000 + i) for i in range(N)])
    (ds / "RELEASE_v1.txt").write_text("tiny test copy\n")


def _title(i):
    return f"Title of paper {PAPER_IDS[i]}"


def _abstract(i):
    return f"Abstract {i}\twith a tab, \"quotes\" and commas"


def _titleabs(path, header=False):
    rows = [f"{PAPER_IDS[i]}\t{_title(i)}\t{_abstract(i)}" for i in reversed(range(N)) if i != MISSING]
    rows.append("123456789\tA paper not in the graph\tignored")
    path.write_text(("paper id\ttitle\tabstract\n" if header else "") + "\n".join(rows) + "\n")


def make_arxiv(root, header=False):
    ds = root / "ogbn_arxiv"
    _graph_files(ds)
    for part, idx in SPLIT.items():
        _gz(ds / "split" / "time" / f"{part}.csv.gz", [str(i) for i in idx])
    perm = [4, 0, 9, 2, 7, 1, 8, 3, 6, 5]  # mapping rows not in node order either
    _gz(ds / "mapping" / "nodeidx2paperid.csv.gz",
        ["node idx,paper id"] + [f"{i},{PAPER_IDS[i]}" for i in perm])
    _gz(ds / "mapping" / "labelidx2arxivcategeory.csv.gz",
        ["label idx,arxiv category"] + [f"{c},arxiv cs c{c}" for c in range(40)])
    _titleabs(root / "titleabs.tsv", header)
    return root


def test_arxiv_text_labels_splits_edges(tmp_path, monkeypatch):
    import io
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # any prompt would fail, not block
    root = make_arxiv(tmp_path / "ogb", header=True)
    out = tmp_path / "tag"
    counts = convert_ogb("ogbn-arxiv", root, out)
    assert counts == {"nodes": N, "train": 5, "val": 2, "test": 2, "edges": len(EDGES),
                      "missing_text": 1}
    tag = read_tag(out)
    nodes = tag.nodes["paper"]
    assert nodes.ids.tolist() == list(range(N))
    for i in (0, 3, 7, 9):
        assert nodes.text[i] == f"{_title(i)}. {_abstract(i)}"
    assert nodes.text[MISSING] == NO_TEXT
    has_text = pq.read_table(out / "nodes" / "paper.parquet").column("has_text").to_pylist()
    assert has_text == [i != MISSING for i in range(N)]
    assert nodes.label.tolist() == LABELS
    assert len(nodes.classes) == 40 and nodes.classes[3] == "arxiv cs c3"
    for part, name in (("train", "train"), ("valid", "val"), ("test", "test")):
        assert np.flatnonzero(nodes.split == SPLIT_CODE[name]).tolist() == SPLIT[part]
    assert nodes.split[7] == 0
    e = tag.edges[("paper", "cites", "paper")]
    assert list(zip(e.src.tolist(), e.dst.tolist())) == EDGES  # directed, no reverses added
    assert tag.metadata["reverse_edges_added"] is False


def test_arxiv_cli_and_explicit_text_file(tmp_path, capsys):
    root = make_arxiv(tmp_path / "ogb")
    text = tmp_path / "elsewhere.tsv"
    (root / "titleabs.tsv").rename(text)
    out = tmp_path / "tag"
    main(["--name", "ogbn-arxiv", "--ogb-root", str(root), "--out", str(out),
          "--text-file", str(text)])
    assert "missing_text=1" in capsys.readouterr().out
    assert read_tag(out).nodes["paper"].text[1] == f"{_title(1)}. {_abstract(1)}"
    # second run: ogb's processed/dgl_data_processed stands in for raw/
    import shutil
    shutil.rmtree(root / "ogbn_arxiv" / "raw")
    assert convert_ogb("ogbn-arxiv", root, tmp_path / "tag2", text)["edges"] == len(EDGES)


def test_missing_release_marker_is_an_error_not_a_prompt(tmp_path):
    root = make_arxiv(tmp_path / "ogb")
    (root / "ogbn_arxiv" / "RELEASE_v1.txt").unlink()
    with pytest.raises(FileNotFoundError, match="MISSING .*RELEASE_v1.txt"):
        convert_ogb("ogbn-arxiv", root, tmp_path / "tag")


def test_missing_files_one_error_naming_layout(tmp_path):
    root = tmp_path / "ogb"
    with pytest.raises(FileNotFoundError) as err:
        convert_ogb("ogbn-arxiv", root, tmp_path / "tag")
    msg = str(err.value)
    ds = root / "ogbn_arxiv"
    for p in (ds / "RELEASE_v1.txt", ds / "raw" / "edge.csv.gz", ds / "raw" / "node_year.csv.gz",
              ds / "split" / "time" / "train.csv.gz", ds / "mapping" / "nodeidx2paperid.csv.gz",
              root / "titleabs.tsv"):
        assert str(p) in msg
    assert not (tmp_path / "tag").exists() and not (ds / "processed").exists()
    # only the text file missing: the message marks just that
    make_arxiv(root)
    (root / "titleabs.tsv").unlink()
    with pytest.raises(FileNotFoundError) as err:
        check_files("ogbn-arxiv", root)
    missing = [line for line in str(err.value).splitlines() if "MISSING" in line]
    assert len(missing) == 1 and "titleabs.tsv" in missing[0]


def test_citation2_edge_splits_and_negatives(tmp_path):
    root = tmp_path / "ogb"
    ds = root / "ogbl_citation2"
    _graph_files(ds, label=False)  # graph = training edges, as in the real release
    split = ds / "split" / "time"
    split.mkdir(parents=True)
    tr = np.array(EDGES).T
    torch.save({"source_node": tr[0], "target_node": tr[1]}, split / "train.pt")
    rng = np.random.default_rng(0)
    pos = {"valid": ([0, 5], [4, 9]), "test": ([2, 8, 1], [6, 3, 7])}
    for part, (s, t) in pos.items():
        torch.save({"source_node": np.array(s), "target_node": np.array(t),
                    "target_node_neg": rng.integers(0, N, (len(s), 4))}, split / f"{part}.pt")
    _gz(ds / "mapping" / "nodeidx2paperid.csv.gz",
        ["node idx,paper id"] + [f"{i},{PAPER_IDS[i]}" for i in range(N)])
    _titleabs(root / "titleabs.tsv")
    out = tmp_path / "tag"
    counts = convert_ogb("ogbl-citation2", root, out)
    assert counts["edges"] == len(EDGES) + 5 and counts["graph_edges"] == len(EDGES)
    assert (counts["train"], counts["val"], counts["test"], counts["missing_text"]) == (10, 2, 3, 1)
    tag = read_tag(out)
    e = tag.edges[("paper", "cites", "paper")]
    got = list(zip(e.src.tolist(), e.dst.tolist(), e.split.tolist()))
    want = [(s, d, 1) for s, d in EDGES] + [(s, d, 2) for s, d in zip(*pos["valid"])] \
        + [(s, d, 3) for s, d in zip(*pos["test"])]
    assert got == want
    assert tag.nodes["paper"].label is None and tag.nodes["paper"].text[2] == f"{_title(2)}. {_abstract(2)}"
    neg = np.load(out / "ogb_negatives.npz")
    assert neg["test_source_node"].tolist() == pos["test"][0]
    assert neg["valid_target_node_neg"].shape == (2, 4)


def test_products_titles_by_asin_with_ogb_inverse_edges(tmp_path):
    root = tmp_path / "ogb"
    ds = root / "ogbn_products"
    _graph_files(ds, year=False)
    for part, idx in SPLIT.items():
        _gz(ds / "split" / "sales_ranking" / f"{part}.csv.gz", [str(i) for i in idx])
    asins = [f"B00{i * 7 % 10}X{i}" for i in range(N)]
    _gz(ds / "mapping" / "nodeidx2asin.csv.gz",
        ["node idx,asin"] + [f"{i},{asins[i]}" for i in reversed(range(N))])
    text = tmp_path / "titles.csv"
    text.write_text("asin,title,extra\n" + "".join(
        f'{asins[i]},"Product {i}, deluxe",x\n' for i in range(N) if i != MISSING))
    out = tmp_path / "tag"
    counts = convert_ogb("ogbn-products", root, out, text_file=text)
    assert counts["missing_text"] == 1 and counts["edges"] == 2 * len(EDGES)
    tag = read_tag(out)
    nodes = tag.nodes["product"]
    assert nodes.text[4] == "Product 4, deluxe" and nodes.text[MISSING] == NO_TEXT
    assert nodes.label.tolist() == LABELS and nodes.classes == [str(c) for c in range(47)]
    e = tag.edges[("product", "copurchased", "product")]
    pairs = set(zip(e.src.tolist(), e.dst.tolist()))
    assert pairs == set(EDGES) | {(d, s) for s, d in EDGES}  # ogb's add_inverse_edge=True
