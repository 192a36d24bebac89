"""benchmarks/bench_quality.py's pure pieces (quality_report) and its dry run: no DistDGL job."""
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_quality as bq  # noqa: E402
import quality_report as qr  # noqa: E402

ROWS = {"pipeline": {"baseline": "frozen LM + RGCN", "stage3": "full pipeline (stage 3)"}}


def rec(seed, val, test, f1=None, status="ok", part="arxiv", run="pipeline", commit="abc1234",
        secs=10.0, extra=()):
    r = {"part": part, "run": run, "seed": seed, "commit": commit, "dirty": False,
         "overrides": [f"seed={seed}", f"output_dir=w/{run}/seed{seed}", "stages=[1,2,3]", *extra],
         "status": status, "rows": ROWS.get(run, {"stage3": "s3"}),
         "host": {"cpus": 2, "machine": "x86_64"}, "budget": {"stage2.epochs": 10}}
    if status == "ok":
        m = {"val_acc": val, "test_acc": test, "seconds": secs}
        if f1 is not None:
            m.update(val_macro_f1=f1, test_macro_f1=f1 / 2)
        r["stages"] = {"baseline": dict(m), "stage3": {**m, "test_acc": test + 0.1}}
    else:
        r.update(rc=1, log="w/bench_console.log")
    return r


@pytest.fixture
def jsonl(tmp_path):
    path = tmp_path / "runs.jsonl"
    for r in [rec(0, 0.5, 0.6, f1=0.2), rec(1, 0.7, 0.8, f1=0.4, secs=20.0),
              rec(2, 0.9, 0.1, status="failed")]:
        qr.append_record(path, r)
    with open(path, "a") as f:
        f.write('{"part": "arxiv", "run": "pipel\n')  # a line cut short by a crash
    return path


def test_mean_std_is_sample_std():
    assert qr.mean_std([1.0, 2.0, 3.0, 4.0]) == (2.5, pytest.approx(math.sqrt(5 / 3)))
    m, s = qr.mean_std([0.7])
    assert m == 0.7 and math.isnan(s)
    assert all(math.isnan(x) for x in qr.mean_std([]))


def test_aggregate_exact_and_failed_not_counted(jsonl):
    records = qr.read_records(jsonl)
    assert len(records) == 3  # the truncated line is skipped
    agg = qr.aggregate(records, ROWS)
    rows = agg["arxiv"]
    assert [r["label"] for r in rows] == ["frozen LM + RGCN", "full pipeline (stage 3)"]
    base, s3 = rows
    assert base["n"] == 2 and base["seeds"] == [0, 1]  # the failed seed 2 is left out
    assert base["val_acc"] == (pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))
    assert base["test_acc"] == (pytest.approx(0.7), pytest.approx(math.sqrt(0.02)))
    assert base["test_macro_f1"] == (pytest.approx(0.15), pytest.approx(math.sqrt(0.005)))
    assert base["seconds"] == (15.0, pytest.approx(math.sqrt(50)))
    assert s3["test_acc"][0] == pytest.approx(0.8)
    assert base["commits"] == ["abc1234"] and not base["mixed"]


def test_latest_record_wins_and_labels_from_table(tmp_path):
    records = [rec(0, 0.1, 0.1), rec(0, 0.5, 0.5, commit="def5678"),
               rec(1, 0.3, 0.3, extra=["stage2.epochs=2"])]
    rows = qr.aggregate(records, {"pipeline": {"baseline": "renamed"}})["arxiv"]
    assert len(rows) == 1 and rows[0]["label"] == "renamed"
    assert rows[0]["val_acc"][0] == pytest.approx(0.4)  # seeds 0 (latest: 0.5) and 1 (0.3)
    assert rows[0]["commits"] == ["abc1234", "def5678"] and rows[0]["mixed"]
    # without the table, the record's own row labels
    assert [r["label"] for r in qr.aggregate(records)["arxiv"]] == [
        "frozen LM + RGCN", "full pipeline (stage 3)"]


def test_skip_logic(jsonl):
    records = qr.read_records(jsonl)
    ov0 = records[0]["overrides"]
    assert qr.is_done(records, "arxiv", "pipeline", 0, ov0)
    assert not qr.is_done(records, "arxiv", "pipeline", 0, ov0 + ["stage2.epochs=2"])
    assert not qr.is_done(records, "cora", "pipeline", 0, ov0)
    # a failed run is tried again
    assert not qr.is_done(records, "arxiv", "pipeline", 2, records[2]["overrides"])


def test_markdown_has_numbers_and_partial(jsonl):
    records = qr.read_records(jsonl)
    md = qr.format_markdown(records, qr.aggregate(records, ROWS), seeds_asked=3)
    assert "## arxiv" in md and "2-core CPU (x86_64)" in md and "sample" in md
    line = next(l for l in md.splitlines() if l.startswith("| frozen LM + RGCN"))
    assert "0.6000 ± 0.1414" in line and "0.7000 ± 0.1414" in line  # val, test acc
    assert "0.1500 ± 0.0707" in line  # test macro-F1 (arxiv)
    assert "2/3 partial" in line and "15.0" in line and "abc1234" in line
    assert "Failed attempts recorded (never aggregated): 1" in md
    assert "still failing: arxiv/pipeline/seed2 (exit 1" in md
    assert "budget of pipeline: stage2.epochs=10" in md
    cora = [rec(0, 0.5, 0.5, part="cora", f1=0.3)]
    md = qr.format_markdown(cora, qr.aggregate(cora, ROWS))
    assert "macro-F1" not in md and "1/1 |" in md and "0.5000 ± n/a" in md


def test_budget_keeps_stages_that_ran():
    res = {"stages": {"baseline": {}, "stage3": {}},
           "config": {"stage1": {"max_steps": 40}, "stage2": {"epochs": 3},
                      "stage3": {"max_steps": 4}, "data": {"max_seq_len": 32}}}
    b = bq.budget(res)
    assert b["stage2.epochs"] == 3 and b["stage3.max_steps"] == 4 and b["data.max_seq_len"] == 32
    assert "stage1.max_steps" not in b


def test_report_files_written_atomically(jsonl, tmp_path):
    records = qr.read_records(jsonl)
    png = qr.plot(qr.aggregate(records, ROWS), tmp_path / "q.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    qr.write_atomic(tmp_path / "Q.md", "x")
    assert (tmp_path / "Q.md").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dry_run_prints_commands_and_skips_recorded(tmp_path, capsys):
    root = tmp_path / "root"
    ov = bq.run_overrides("cora", "joint_pretrained", 0, root.resolve(), ["stage2.epochs=2"])
    qr.append_record(root / "quality_runs.jsonl",
                     {"part": "cora", "run": "joint_pretrained", "seed": 0, "overrides": ov,
                      "status": "ok", "stages": {}})
    assert bq.main(["--part", "cora", "--seeds", "0", "1", "--runs", "joint_pretrained",
                    "--dry-run", "--out-root", str(root), "--set", "stage2.epochs=2"]) == 0
    out = capsys.readouterr().out
    cmds = [l for l in out.splitlines() if "lmgnn_dist.drivers.pipeline" in l]
    assert len(cmds) == 1 and "seed=1" in cmds[0] and cmds[0].endswith("stage2.epochs=2")
    assert "skip cora/joint_pretrained/seed0" in out
    assert "stages=[2,3] baseline=false" in cmds[0]
    assert f"data.part_dir={root.resolve() / 'cora' / 'parts'}" in cmds[0]
    assert not (root / "cora").exists()  # nothing ran


def test_targets_compare_mean_test_accuracy_of_two_rows():
    import quality_targets as qt

    def row(label, test, n=2):
        return {"label": label, "test_acc": (test, 0.01), "n": n}

    agg = {"arxiv": [row(qt.FROZEN, 0.70), row(qt.STAGE2, 0.72), row(qt.FULL, 0.725, n=1),
                     row(qt.LM_ONLY, 0.60)],
           "cora": [row(qt.FROZEN, 0.88), row(qt.STAGE2, 0.90), row(qt.FULL, 0.90)]}
    got = {(c["part"], c["what"]): c for c in qt.check(agg, seeds_asked=2)}
    full = got[("arxiv", "full pipeline >= frozen LM + RGCN + 2 points")]
    assert full["diff"] == pytest.approx(0.025) and full["holds"]
    assert full["n"] == 1 and full["partial"]  # the full pipeline row has one seed of two
    assert got[("arxiv", "stage 3 > stage 2")]["holds"]
    assert got[("arxiv", "LM-only < frozen LM + RGCN")]["holds"]
    assert got[("cora", "stage 3 >= stage 2")]["holds"]  # equal is enough on Cora
    assert ("cora", "stage 3 > stage 2") not in got and ("cora", "LM-only < frozen LM + RGCN") \
        not in got  # arXiv-only target; no LM-only row on cora here
    worse = qt.check({"arxiv": [row(qt.FROZEN, 0.70), row(qt.FULL, 0.71)]})
    assert [c["holds"] for c in worse] == [False, True]  # +1 point: not the +2 asked
    lines = qt.markdown(worse)
    assert "| arxiv | full pipeline >= frozen LM + RGCN + 2 points | +1.00 | no | 2 |" in lines


def test_reuse_copies_only_finished_stages_the_run_lacks(tmp_path):
    base, out = tmp_path / "pipeline" / "seed0", tmp_path / "pipeline_pseudo" / "seed0"
    for stage, done in (("baseline", True), ("stage1", True), ("stage2", False),
                        ("stage3", True)):
        (base / stage).mkdir(parents=True)
        (base / stage / "gnn.pt").write_text(stage)
        if done:
            (base / stage / "metrics.json").write_text("{}")
    (out / "baseline").mkdir(parents=True)
    (out / "baseline" / "metrics.json").write_text('{"mine": 1}')
    assert bq.reuse_stages(base, out) == ["stage1"]  # baseline kept, stage2 unfinished
    assert (out / "stage1" / "gnn.pt").read_text() == "stage1"
    assert (out / "baseline" / "metrics.json").read_text() == '{"mine": 1}'
    assert not (out / "stage2").exists() and not (out / "stage3").exists()
    for run in bq.RUNS.values():  # a reusing run resumes (the Cora example turns it off)
        assert not run.get("reuse") or "resume=true" in run["overrides"]


def test_set_overrides_get_their_own_output_folder(tmp_path):
    plain = bq.run_overrides("cora", "pipeline", 1, tmp_path, [])
    varied = bq.run_overrides("cora", "pipeline", 1, tmp_path, ["stage3.lm_lr=1e-4"])
    out = [o for o in plain if o.startswith("output_dir=")]
    assert out == [f"output_dir={tmp_path}/cora/pipeline/seed1"]
    other = [o for o in varied if o.startswith("output_dir=")][0]
    assert other.startswith(f"output_dir={tmp_path}/cora/pipeline+") and other.endswith("/seed1")
    assert varied[-1] == "stage3.lm_lr=1e-4"
