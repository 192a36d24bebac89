"""benchmarks/quality_policies.py: the stage-3 input-policy table from records alone."""
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_quality as bq  # noqa: E402
import quality_paired as qpair  # noqa: E402
import quality_policies as qpol  # noqa: E402
import quality_report as qr  # noqa: E402
import quality_stats as qs  # noqa: E402

BASE, FRESH, LM_ONLY = "joint_pretrained_bf16", "joint_fresh_inputs", "joint_lm_only_bf16"
S2 = {"val_acc": 0.88, "test_acc": 0.89, "seconds": 65.0, "encode_s": 35.0, "epochs": 30,
      "peak_rss_mb_max_trainer": 1000.0, "code": {"commit": "abc1234", "dirty": False}}


def s3(test, train_s, grad, no_grad, refresh=0.0, head="refit", rss=1500.0):
    return {"val_acc": 0.89, "test_acc": test, "seconds": train_s + 20, "train_s": train_s,
            "epochs": 2.0, "head": head, "peak_rss_mb_max_trainer": rss,
            "lm_encodings_per_node_per_epoch": {"with_grad": grad, "no_grad": no_grad,
                                                "refresh": refresh, "from_cache": 9.0},
            "code": {"commit": "abc1234", "dirty": False}}


def record(run, seed, stages, reused=None):
    return {"part": "cora", "run": run, "seed": seed, "status": "ok", "commit": "abc1234",
            "dirty": False, "overrides": [f"seed={seed}", *bq.RUNS[run]["overrides"]],
            "stages": stages,
            "reused": reused, "rows": bq.RUNS[run]["rows"]}


@pytest.fixture
def records():
    out = []
    for seed, (tb, tf) in enumerate([(0.890, 0.900), (0.880, 0.885), (0.895, 0.910)]):
        out.append(record(BASE, seed, {"stage2": dict(S2), "stage3": s3(tb, 200.0 + seed, 0.6,
                                                                         0.1, head="joint")}))
        copied = dict(S2, copied_from={"run": BASE, "path": "x"})
        out.append(record(FRESH, seed, {"stage2": copied, "stage3": s3(tf, 400.0, 0.6, 3.0)},
                          reused={"run": BASE, "stages": ["stage2"]}))
        out.append(record(LM_ONLY, seed, {"stage2": copied, "stage3": s3(0.7, 50.0, 0.6, 0.0)},
                          reused={"run": BASE, "stages": ["stage2"]}))
    return out


def test_policy_table_numbers(records):
    agg = qr.aggregate(records, {k: v["rows"] for k, v in bq.RUNS.items()}, bq.RUNS)
    paired = qpair.paired(records, agg, bq.RUNS)
    lines = qpol.table(records, agg, paired)
    assert lines[0] == "### cora"
    floor = next(l for l in lines if l.startswith("| floor: frozen LM"))
    # (65 - 35) / 30 = 1.0 s per epoch, the encode once
    assert "| 3 | 1.0 | frozen encode once: 35.0 s | 1000 |" in floor
    base = next(l for l in lines if f"({BASE}) |" in l and l.startswith("| cache"))
    # (200 + 201 + 202) / 3 / 2 epochs = 100.5; 0.6 + 0.1 + 0 encodes; joint head kept on all
    assert "| 3 | 100.5 | 0.60 + 0.10 + 0.00 = 0.70 | 1500 |" in base
    assert base.endswith("| base | 0/3 |")
    lm_only = next(l for l in lines if l.startswith("| floor: LM only"))
    assert "| 3 | 25.0 | 0.60 + 0.00 + 0.00 = 0.60 |" in lm_only and lm_only.endswith("| - |")
    assert lines.index(floor) < lines.index(lm_only) < lines.index(base)
    fresh = next(l for l in lines if f"({FRESH}) |" in l)
    # a stage-3-only job of before cache_fill_s: stage 2's 35 s encode off its 400 s; the
    # LM-only floor above (graph-free: no fill) keeps its 50 s
    assert "| 3 | 182.5 | 0.60 + 3.00 + 0.00 = 3.60 |" in fresh and fresh.endswith("| 3/3 |")
    t = qs.t_interval([0.010, 0.005, 0.015])
    assert (f"| {100 * t['mean']:+.2f} [{100 * t['lo']:+.2f}, {100 * t['hi']:+.2f}] (3 seeds) |"
            in fresh)
    assert qr._pm(qr.mean_std([0.900, 0.885, 0.910])) in fresh
    assert "Code: abc1234." in lines[-2]
    # without the base's stage 3 there is no table
    only_fresh = [r for r in records if r["run"] in (FRESH, LM_ONLY)]
    agg = qr.aggregate(only_fresh, {k: v["rows"] for k, v in bq.RUNS.items()}, bq.RUNS)
    assert qpol.table(only_fresh, agg, {}) == []


def test_training_seconds_leave_out_the_start_fill():
    copied = dict(S2, copied_from={"run": BASE, "path": "x"})
    old = s3(0.9, 100.0, 0.5, 1.0)  # a stage-3-only job before cache_fill_s: fill in train_s
    assert qpol.training_s(old, copied) == 100.0 - 35.0  # stage 2's frozen encode taken off
    assert qpol.training_s(old, dict(S2)) == 100.0  # stage 2 ran in the job: nothing to take
    new = dict(old, cache_fill_s=30.0)  # since cache_fill_s, train_s leaves the fill out
    assert qpol.training_s(new, copied) == 100.0
    assert qpol.cost([old], [copied])["s_epoch"] == (100.0 - 35.0) / 2


def test_cost_means_and_nan():
    c = qpol.cost([s3(0.9, 100.0, 0.5, 1.0, refresh=2.0), s3(0.9, 300.0, 0.7, 3.0)])
    assert c["s_epoch"] == 100.0 and c["total"] == pytest.approx(0.6 + 2.0 + 1.0)
    assert c["refit"] == 2 and math.isnan(c["encode_s"])
    c = qpol.cost([{"val_acc": 0.5}])  # a record of before the cost keys
    assert math.isnan(c["s_epoch"]) and math.isnan(c["rss"]) and c["refit"] == 0


def test_glem_full_reencodes_count_as_no_grad_and_its_rounds_as_kept_fits():
    glem = s3(0.9, 100.0, 1.0, 0.0, head="glem")
    glem["lm_encodings_per_node_per_epoch"]["full_reencode"] = 1.0  # 2 rounds over 2 epochs
    c = qpol.cost([glem, s3(0.9, 100.0, 1.0, 0.0, head="joint")])
    assert c["no_grad"] == pytest.approx(0.5) and c["total"] == pytest.approx(1.5)
    assert c["refit"] == 1  # the GLEM round's GNN, not stage 2's model


def test_write_section_replaces_only_its_part(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nkept text\n")
    qpol.write_section(path, ["| a |"])
    qpol.write_section(path, ["| b |", "| c |"])
    text = path.read_text()
    assert text == f"# Results\n\nkept text\n\n{qpol.BEGIN}\n| b |\n| c |\n{qpol.END}\n"
    path.write_text(f"x\n{qpol.BEGIN}\nold\n")
    with pytest.raises(ValueError, match="without the other"):
        qpol.write_section(path, ["| d |"])
    assert path.read_text() == f"x\n{qpol.BEGIN}\nold\n"  # untouched


def test_report_writes_the_table_into_results_md(records, tmp_path):
    for r in records:
        qr.append_record(tmp_path / "quality_runs.jsonl", r)
    (tmp_path / "RESULTS.md").write_text(f"# R\n\n{qpol.BEGIN}\nold\n{qpol.END}\n\ntail\n")
    assert bq.main(["--report", "--out-root", str(tmp_path)]) == 0
    res = (tmp_path / "RESULTS.md").read_text()
    assert "old" not in res and res.endswith(f"{qpol.END}\n\ntail\n") and "### cora" in res
    assert "## Stage 3 input policies (issue 25)" in (tmp_path / "QUALITY.md").read_text()


def test_a_refused_row_says_so_in_one_cell(records):
    records[0]["commit"] = records[0]["stages"]["stage3"]["code"]["commit"] = "def5678"
    records[0]["stages"]["stage2"]["code"] = {"commit": "def5678", "dirty": False}
    agg = qr.aggregate(records, {k: v["rows"] for k, v in bq.RUNS.items()}, bq.RUNS)
    lines = qpol.table(records, agg, qpair.paired(records, agg, bq.RUNS))
    base = next(l for l in lines if l.startswith("| cache"))
    assert base.endswith("| 3 | refused: its seeds ran different code or copied stages (the "
                         "line in QUALITY.md) |")
