"""benchmarks/stage3_selection.py: stage 3's validation gain against its test gain, from records."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import stage3_selection as sel  # noqa: E402


def _rec(run, seed, s2, s3, part="cora", status="ok", overrides=(), head="refit"):
    stages = {"stage2": {"val_acc": s2[0], "test_acc": s2[1]},
              "stage3": {"val_acc": s3[0], "test_acc": s3[1], "head": head}}
    return {"part": part, "run": run, "seed": seed, "status": status,
            "overrides": list(overrides), "stages": stages}


def test_points_take_the_latest_ok_record_and_skip_lm_only_and_incomplete_runs():
    recs = [_rec("a", 0, (0.80, 0.70), (0.81, 0.69)),
            _rec("a", 0, (0.80, 0.70), (0.82, 0.73)),  # a rerun: the later line wins
            _rec("a", 1, (0.80, 0.70), (0.90, 0.90), status="failed"),
            _rec("lm", 0, (0.80, 0.70), (0.30, 0.30), overrides=["stage3.mode=lm_only"]),
            {"part": "cora", "run": "s2only", "seed": 0, "status": "ok",
             "stages": {"stage2": {"val_acc": 0.8, "test_acc": 0.7}}},
            _rec("a", 0, (0.60, 0.50), (0.60, 0.50), part="low", head=None)]
    pts = sel.selection_points(recs)
    assert list(pts) == ["cora", "low"]
    (p,) = pts["cora"]
    assert (p.run, p.seed, p.head) == ("a", 0, "refit")
    assert p.dval == pytest.approx(2.0) and p.dtest == pytest.approx(3.0)
    assert pts["low"][0].dval == 0 and pts["low"][0].head == ""


def test_summary_numbers():
    pts = [sel.Point("r", i, dv, dt, "refit") for i, (dv, dt) in enumerate(
        [(0.0, 0.0), (0.2, 1.0), (0.4, -1.0), (0.6, 2.0), (0.8, -2.0)])]
    s = sel.summarise(pts)
    assert (s["n"], s["moved"], s["test_worse"]) == (5, 4, 2)
    assert s["dtest"]["mean"] == pytest.approx(0.0) and s["dtest"]["n"] == 4
    assert s["spearman"] == pytest.approx(-0.4)  # ranks (1,2,3,4) vs (3,2,4,1)
    assert s["median_dval"] == pytest.approx(0.5)
    assert s["low"] == pytest.approx(0.0) and s["high"] == pytest.approx(0.0)
    assert sel.summarise(pts[:1]) == {"n": 1, "moved": 0, "test_worse": 0}
    assert math.isnan(sel.summarise(pts[:3])["spearman"])  # 2 moved runs


def test_table_and_plot(tmp_path):
    pts = {"cora": [sel.Point("r", 0, 0.5, -0.5, "refit"), sel.Point("r", 1, 1.0, 0.5, "joint"),
                    sel.Point("r", 2, 1.5, 1.5, "glem")],
           "arxiv": [sel.Point("r", 0, 0.0, 0.0, "joint")]}
    lines = sel.table(pts).splitlines()
    assert lines[2] == ("| cora | 3 | 3 | 1 | +0.50 [-1.98, +2.98] | +1.00 | 1.00 | "
                        "+0.00 / +1.50 |")
    assert lines[3] == "| arxiv | 1 | 0 | - | - | - | - | - |"
    out = sel.plot(pts, tmp_path / "s.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="nothing to draw"):
        sel.plot({"arxiv": pts["arxiv"]}, tmp_path / "t.png")
