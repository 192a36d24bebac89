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
