"""benchmarks/bench_quality.py's pure pieces (quality_report) and its dry run: no DistDGL job."""
import json
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
    ok = {"pipeline": {"mixed_code_ok": "test"}}
    rows = qr.aggregate(records, {"pipeline": {"baseline": "renamed"}}, ok)["arxiv"]
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
    # a record of other code is not this checkout's (PROTOCOL.md: one clean commit per row)
    assert qr.is_done(records, "arxiv", "pipeline", 0, ov0, records[0]["commit"])
    assert not qr.is_done(records, "arxiv", "pipeline", 0, ov0, "0000000")
    dirty = [dict(records[0], dirty=True)]
    assert not qr.is_done(dirty, "arxiv", "pipeline", 0, ov0, records[0]["commit"])


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
    import quality_plot

    records = qr.read_records(jsonl)
    png = quality_plot.plot(qr.aggregate(records, ROWS), {}, tmp_path / "q.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    qr.write_atomic(tmp_path / "Q.md", "x")
    assert (tmp_path / "Q.md").read_text() == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_dry_run_prints_commands_and_skips_recorded(tmp_path, capsys):
    root = tmp_path / "root"
    ov = bq.run_overrides("cora", "joint_pretrained", 0, root.resolve(), ["stage2.epochs=2"])
    qr.append_record(root / "quality_runs.jsonl",
                     {"part": "cora", "run": "joint_pretrained", "seed": 0, "overrides": ov,
                      "status": "ok", "stages": {}, "commit": bq.git_state()[0],
                      "dirty": False})  # recorded at this checkout's commit
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
    assert full["diff"] == pytest.approx(0.025) and full["holds"] == "yes (means only)"
    assert full["n"] == 1 and full["partial"]  # the full pipeline row has one seed of two
    assert got[("arxiv", "stage 3 > stage 2")]["holds"] == "yes (means only)"
    assert got[("arxiv", "LM-only < frozen LM + RGCN")]["holds"] == "yes (means only)"
    assert got[("cora", "stage 3 >= stage 2")]["holds"] == "yes (means only)"  # equal is enough
    assert ("cora", "stage 3 > stage 2") not in got and ("cora", "LM-only < frozen LM + RGCN") \
        not in got  # arXiv-only target; no LM-only row on cora here
    worse = qt.check({"arxiv": [row(qt.FROZEN, 0.70), row(qt.FULL, 0.71)]})
    assert [c["holds"] for c in worse] == ["no (means only)", "yes (means only)"]
    lines = qt.markdown(worse)
    assert ("| arxiv | full pipeline >= frozen LM + RGCN + 2 points | +1.00 | - | "
            "no (means only) | 2 |") in lines


def test_targets_use_the_paired_interval_where_the_rows_are_paired():
    """PROTOCOL.md: a direction is claimed only when the paired t interval lies on one side
    of the threshold; a positive mean whose interval contains 0 is 'not resolved'."""
    import quality_targets as qt

    def row(label, test):
        return {"label": label, "test_acc": (test, 0.01), "n": 5}

    def res(lo, hi):
        return {"label_a": qt.JOINT3, "label_b": qt.JOINT2,
                "test": {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 5, "sd": 0.01}}

    agg = {"cora": [row(qt.JOINT2, 0.8866), row(qt.JOINT3, 0.8895)]}
    for (lo, hi), want in (((-0.003, 0.0089), "not resolved"), ((0.001, 0.01), "yes"),
                           ((-0.01, -0.001), "no")):
        c, = qt.check(agg, paired={"cora": [res(lo, hi)]})
        assert c["what"] == "(joint run) stage 3 > stage 2" and c["holds"] == want
        assert c["interval"] == (lo, hi)
    assert "| cora | (joint run) stage 3 > stage 2 | +0.29 | [-1.00, -0.10] | no | 5 |" in \
        qt.markdown([c])


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
    assert json.loads((out / "stage1" / "copied_from.json").read_text()) == {
        "run": "pipeline", "path": str(base / "stage1")}  # a later attempt still knows
    assert (out / "baseline" / "metrics.json").read_text() == '{"mine": 1}'
    assert not (out / "stage2").exists() and not (out / "stage3").exists()
    for run in bq.RUNS.values():  # a reusing run resumes (the Cora example turns it off)
        assert not run.get("reuse") or "resume=true" in run["overrides"]


def test_run_budget_replaces_the_parts_entries_of_its_keys(tmp_path):
    import quality_defs as qd

    # the part's task-objective stage-1 budget (10 epochs) must not reach a link-prediction
    # stage 1, whose epochs count passes over the edges
    ov = bq.run_overrides("cora_low", "pipeline_lp_mean", 0, tmp_path, [])
    s1 = [o for o in ov if o.startswith("stage1.epochs=")]
    assert s1 == ["stage1.epochs=0.5"]
    assert "stage3.epochs=8" in ov and "stage3.eval_every=12" in ov  # the part's other keys
    assert ov[-3:] == ["stage3.epochs=8", "stage3.eval_every=12", "stage1.epochs=0.5"]
    assert qd.run_budget("cora", "pipeline_lp_mean") == ["stage1.epochs=0.5"]
    # a run without its own budget keeps the part's, in the part's order
    assert qd.run_budget("cora_low", "pipeline_mean") == PARTS_BUDGET_LOW
    assert bq.run_overrides("cora_low", "pipeline_mean", 0, tmp_path, [])[-3:] == PARTS_BUDGET_LOW
    assert qd.defined_overrides("cora_low", "pipeline_lp")[-2:] == [
        "stage1.epochs=null", "stage1.max_steps=40"]


PARTS_BUDGET_LOW = ["stage1.epochs=10", "stage3.epochs=8", "stage3.eval_every=12"]


def test_set_overrides_get_their_own_output_folder(tmp_path):
    plain = bq.run_overrides("cora", "pipeline", 1, tmp_path, [])
    varied = bq.run_overrides("cora", "pipeline", 1, tmp_path, ["stage3.lm_lr=1e-4"])
    out = [o for o in plain if o.startswith("output_dir=")]
    assert out == [f"output_dir={tmp_path}/cora/pipeline/seed1"]
    other = [o for o in varied if o.startswith("output_dir=")][0]
    assert other.startswith(f"output_dir={tmp_path}/cora/pipeline+") and other.endswith("/seed1")
    assert varied[-1] == "stage3.lm_lr=1e-4"


# ------------------------------------------------------------------ paired statistics (issue 21)
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

import quality_paired as qpair  # noqa: E402
import quality_stats as qs  # noqa: E402

RUNS3 = {"pipeline": {"rows": {"baseline": "frozen", "stage2": "s2", "stage3": "s3"}},
         "pseudo": {"reuse": "pipeline", "copies_ok": "by design", "rows": {"stage3": "s3 pl"}}}
ROWS3 = {k: v["rows"] for k, v in RUNS3.items()}
IDS = 1000 + 7 * np.arange(400)  # the test nodes' TAG ids, ascending


def correct(seed, p, salt=0, n=len(IDS)):
    return np.random.default_rng(100 * seed + salt).random(n) < p


def full_rec(seed, accs, commit="abc1234", dirty=False, run="pipeline", per_node=True,
             copied=(), ids=IDS):
    """A new-format record: per stage its code, its copy origin and per-node correctness
    whose accuracy is the stage's test_acc (``accs``: stage -> (val acc, p of the draw))."""
    stages = {}
    for i, (stage, (val, p)) in enumerate(accs.items()):
        c = correct(seed, p, salt=i, n=len(ids))
        stages[stage] = {"val_acc": val, "test_acc": float(c.mean()), "seconds": 1.0 + i,
                         "code": {"commit": commit, "dirty": dirty}}
        if per_node:
            stages[stage]["test_correct"] = qs.pack_correct(ids, c)
        if stage in copied:
            stages[stage]["copied_from"] = {"run": "pipeline", "path": "w"}
    return {"part": "cora", "run": run, "seed": seed, "status": "ok", "commit": commit,
            "dirty": dirty, "overrides": [f"seed={seed}"], "stages": stages}


def pipeline_recs(n_seeds=4, **kw):
    return [full_rec(s, {"baseline": (0.80, 0.78), "stage2": (0.85 + s / 100, 0.84),
                         "stage3": (0.86 + s / 50, 0.86)}, **kw) for s in range(n_seeds)]


def by_kind(results, kind):
    return next(r for r in results["cora"] if r["kind"] == kind)


def test_t_interval_and_mdd_equal_scipy_references():
    records = pipeline_recs()
    agg = qr.aggregate(records, ROWS3, RUNS3)
    res = by_kind(qpair.paired(records, agg, RUNS3), "stage 3 - stage 2")
    d = np.array([r["stages"]["stage3"]["test_acc"] - r["stages"]["stage2"]["test_acc"]
                  for r in records])
    ref = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
    assert res["seeds"] == [0, 1, 2, 3] and res["test"]["n"] == 4
    assert (res["test"]["lo"], res["test"]["hi"]) == (pytest.approx(ref.low),
                                                      pytest.approx(ref.high))
    assert res["test"]["mean"] == pytest.approx(d.mean())
    dv = np.array([0.01 + s / 100 for s in range(4)])  # val: 0.86 + s/50 - (0.85 + s/100)
    assert res["val"]["lo"] == pytest.approx(stats.ttest_1samp(dv, 0).confidence_interval().low)
    mdd = (stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * d.std(ddof=1) / 2
    assert res["mdd_seeds"] == pytest.approx(mdd)
    # a paired t test at that true difference has power close to 0.8 (noncentral t)
    nc = mdd / (d.std(ddof=1) / 2)
    power = 1 - stats.nct.cdf(stats.t.ppf(0.975, 3), 3, nc)
    assert 0.7 < power < 0.85
    p = np.mean([[r["stages"][s]["test_acc"] for s in ("stage2", "stage3")] for r in records])
    floor = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * np.sqrt(2 * p * (1 - p) / 400)
    assert res["n_test"] == 400 and res["mdd_nodes"] == pytest.approx(floor)
    one = qs.t_interval([0.01])
    assert one["mean"] == 0.01 and math.isnan(one["lo"]) and math.isnan(qs.mdd_seeds(0.1, 1))
    md = "\n".join(qpair.markdown(qpair.paired(records, agg, RUNS3)))
    line = next(ln for ln in md.splitlines() if ln.startswith("| stage 3 - stage 2: s3 − s2"))
    assert f"[{100 * ref.low:+.2f}, {100 * ref.high:+.2f}]" in line
    assert f"| {100 * mdd:.2f} | {100 * floor:.2f} (400) |" in line
    single = qpair.markdown(qpair.paired(records[:1], qr.aggregate(records[:1], ROWS3, RUNS3),
                                         RUNS3))
    assert any("(n/a: 1 seed)" in ln for ln in single)


def test_paired_bootstrap_contains_the_observed_difference_and_narrows_with_n():
    def boot(n):
        a = [correct(s, 0.85, 1, n) for s in range(3)]
        b = [correct(s, 0.80, 2, n) for s in range(3)]
        obs, lo, hi = qs.paired_bootstrap(a, b)
        assert obs == pytest.approx(np.mean([x.mean() - y.mean() for x, y in zip(a, b)]))
        assert lo < obs < hi
        assert qs.paired_bootstrap(a, b) == (obs, lo, hi)  # a fixed seed: the same interval
        return hi - lo

    small, large = boot(500), boot(8000)
    assert large < 0.4 * small  # width ~ 1/sqrt(N): ratio sqrt(500/8000) = 0.25
    same = [np.ones(50, bool)]
    assert qs.paired_bootstrap(same, same) == (0.0, 0.0, 0.0)  # identical models: no spread
    with pytest.raises(ValueError, match="differ in length"):
        qs.paired_bootstrap([np.ones(5, bool)], [np.ones(6, bool)])


def test_records_carry_per_node_correctness_and_misaligned_orders_are_refused():
    c = correct(0, 0.7)
    entry = qs.pack_correct(IDS, c)
    assert entry["n"] == 400 and (qs.unpack_correct(entry) == c).all()
    assert len(entry["bits"]) == 4 * math.ceil(50 / 3)  # 400 bits = 50 bytes, base64
    shuffled = qs.pack_correct(IDS[::-1], c)
    with pytest.raises(ValueError, match="node orders differ: 400 nodes order"):
        qs.aligned([entry, shuffled])
    records = pipeline_recs(2)
    records[1] = full_rec(1, {"baseline": (0.8, 0.78), "stage2": (0.85, 0.84),
                              "stage3": (0.86, 0.86)}, ids=IDS[::-1])
    agg = qr.aggregate(records, ROWS3, RUNS3)
    res = by_kind(qpair.paired(records, agg, RUNS3), "stage 3 - stage 2")
    assert res["boot"] is None and res["boot_why"].startswith("node orders differ")
    assert res["test"]["n"] == 2  # the t interval needs no per-node record
    old = pipeline_recs(2, per_node=False)
    sizes = qpair.test_set_sizes(old, {"cora": 543})
    md = "\n".join(qpair.markdown(qpair.paired(old, qr.aggregate(old, ROWS3, RUNS3), RUNS3,
                                               {"cora": 543}), sizes))
    assert "n/a (no per-node records)" in md and "(543) |" in md
    at = [(stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * math.sqrt(2 * p * (1 - p) / 543)
          for p in (0.7, 0.8, 0.9)]
    assert (f"Test set: 543 nodes (from the split's size in quality_defs.py PARTS); one seed resolves (z_{{0.975}} + z_{{0.8}})"
            f" · sqrt(2 p (1-p) / 543) = {' / '.join(f'{100 * x:.2f}' for x in at)} points") in md
    assert qpair.test_set_sizes(records, {"cora": 543}) == {"cora": (400, "the records")}


def test_mixed_code_and_copied_stages_are_refused_with_one_line(tmp_path, capsys):
    records = pipeline_recs(3)
    records[1] = pipeline_recs(3, commit="def5678", dirty=True)[1]
    row = qr.aggregate(records, ROWS3, RUNS3)["cora"][2]
    assert row["refused"] == (
        "refused to aggregate cora / s3 (run pipeline, stage3), seeds 0, 1, 2: ran different "
        "code: seed 0 abc1234; seed 1 def5678+dirty; seed 2 abc1234")
    assert "test_acc" not in row and row["commits"] == ["abc1234", "def5678+dirty"]
    allowed = qr.aggregate(records, ROWS3, {"pipeline": {"mixed_code_ok": "same math"}})
    assert allowed["cora"][2]["refused"] is None and "test_acc" in allowed["cora"][2]
    assert allowed["cora"][2]["allowed"].endswith("(mixed_code_ok: same math)")
    # two dirty seeds of one commit cannot be shown to be the same code
    dirty = pipeline_recs(2, dirty=True)
    assert "ran different code" in qr.aggregate(dirty, ROWS3, RUNS3)["cora"][0]["refused"]
    # copied stages: refused unless the run says why (pseudo's copies_ok)
    copy = [full_rec(0, {"stage1": (0.7, 0.7), "stage2": (0.8, 0.8), "stage3": (0.9, 0.9)},
                     copied=("stage1", "stage2"))]
    s2, s3 = qr.aggregate(copy, ROWS3, {})["cora"]
    assert s3["refused"] == ("refused to aggregate cora / s3 (run pipeline, stage3), seed 0: "
                             "copied stages: seed 0 stage1, stage2 from pipeline")
    assert s2["refused"].endswith("copied stages: seed 0 stage1, stage2 from pipeline")
    # the report prints the line and writes it into QUALITY.md; the comparison is refused
    for r in records:
        qr.append_record(tmp_path / "quality_runs.jsonl", dict(r, rows=RUNS3["pipeline"]["rows"]))
    assert bq.main(["--report", "--out-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    line = row["refused"].replace("/ s3 (", f"/ {bq.RUNS['pipeline']['rows']['stage3']} (")
    assert line in out.splitlines()  # the script's own row labels
    md = (tmp_path / "QUALITY.md").read_text()
    assert f"- {line}" in md and "| refused | refused | refused |" in md


def test_old_records_copies_are_inferred_and_variants_must_start_from_their_base():
    base = [{"part": "cora", "run": "pipeline", "seed": s, "status": "ok", "commit": "aaa",
             "dirty": False, "stages": {"stage2": {"val_acc": 0.8, "test_acc": 0.8,
                                                   "seconds": 1.5 + s},
                                        "stage3": {"val_acc": 0.81, "test_acc": 0.8 + s / 100,
                                                   "seconds": 9.0}}} for s in range(2)]
    # seed 0 copied stage 2 in an earlier attempt (no 'reused'), seed 1 from another stage 2
    var = [{"part": "cora", "run": "pseudo", "seed": s, "status": "ok", "commit": "bbb",
            "dirty": False, "reused": None if s == 0 else {"run": "pipeline", "stages": ["stage2"]},
            "stages": {"stage2": dict(base[s]["stages"]["stage2"], seconds=1.5 + 2 * s),
                       "stage3": {"val_acc": 0.82, "test_acc": 0.85, "seconds": 7.0}}}
           for s in range(2)]
    import quality_provenance as qp

    prov = qp.provenance(base + var)
    assert prov[id(var[0])]["stage2"] == {"code": "aaa", "copied_from": "pipeline"}
    assert prov[id(var[0])]["stage3"] == {"code": "bbb", "copied_from": None}
    assert prov[id(var[1])]["stage2"] == {"code": "unknown", "copied_from": "pipeline"}
    runs = dict(RUNS3, pseudo=dict(RUNS3["pseudo"], mixed_code_ok="seed 1's copy is unknown"))
    agg = qr.aggregate(base + var, ROWS3, runs)
    res = by_kind(qpair.paired(base + var, agg, runs), "variant - base")
    assert res["seeds"] == [0] and res["dropped"] == [
        "seed 1: pseudo did not start from pipeline's stage2 of that seed"]
    assert res["test"]["mean"] == pytest.approx(0.05) and res["boot_why"] == "no per-node records"


def test_stage_entry_reads_code_copy_and_predictions(tmp_path):
    import quality_record as qrec

    d = tmp_path / "stage3"
    d.mkdir()
    pred = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    np.savez(d / "test_predictions.npz", node_id=IDS[:4], pred=pred[0], label=pred[1])
    (d / "copied_from.json").write_text('{"run": "pipeline", "path": "x"}')
    met = {"test_acc": 0.75, "losses": [1.0],
           "code": {"commit": "abc1234", "modified": ["benchmarks/quality_runs.jsonl"]}}
    e = qrec.stage_entry(d, met, qr.METRICS)
    assert e["code"] == {"commit": "abc1234", "dirty": False}  # the harness's outputs only
    assert e["copied_from"]["run"] == "pipeline" and "losses" not in e
    assert qs.unpack_correct(e["test_correct"]).tolist() == [True, True, False, True]
    assert e["test_correct"]["order"] == qs.order_hash(IDS[:4])
    met["code"]["modified"].append("lmgnn_dist/trainer/joint.py")
    assert qrec.stage_entry(d, met, qr.METRICS)["code"]["dirty"] is True


def test_quality_png_draws_both_intervals_per_comparison():
    import matplotlib.pyplot as plt
    import quality_plot

    records = pipeline_recs()
    agg = qr.aggregate(records, ROWS3, RUNS3)
    paired = qpair.paired(records, agg, RUNS3)
    fig = quality_plot.draw(agg, paired)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["cora", "cora: paired differences"]
    forest = fig.axes[1]
    res = by_kind(paired, "stage 3 - stage 2")
    t_line = next(ln for ln in forest.get_lines() if ln.get_label() == "t 95 % over seeds")
    assert list(t_line.get_xdata()) == pytest.approx([100 * res["test"]["lo"],
                                                      100 * res["test"]["hi"]])
    boots = [ln for ln in forest.get_lines()
             if ln.get_label() == "bootstrap 95 % over test nodes"]
    assert len(boots) == 2  # stage 3 - stage 2, full pipeline - frozen
    assert any(list(ln.get_xdata()) == pytest.approx([100 * res["boot"][1], 100 * res["boot"][2]])
               for ln in boots)
    assert [ln for ln in forest.get_lines() if list(ln.get_xdata()) == [0, 0]]  # zero line
    plt.close(fig)


def test_a_comparison_far_off_scale_is_clipped_and_labelled_not_squashing_the_rest():
    import matplotlib.pyplot as plt
    import quality_plot

    def res(mean, half):
        return {"refused": False, "boot": None, "kind": "variant - base", "label_a": "a",
                "label_b": "b", "seeds": [0, 1],
                "test": {"mean": mean, "lo": mean - half, "hi": mean + half}}

    fig, ax = plt.subplots()
    quality_plot._forest(ax, "cora", [res(0.004, 0.003), res(-0.55, 0.05)])
    assert ax.get_xlim() == (-quality_plot.OFF_SCALE, quality_plot.OFF_SCALE)
    assert [x.get_text() for x in ax.texts] == ["-55.0 (off scale)"]
    fig2, ax2 = plt.subplots()  # nothing off scale: matplotlib's own range, no label
    quality_plot._forest(ax2, "cora", [res(0.004, 0.003), res(-0.02, 0.01)])
    assert not ax2.texts and ax2.get_xlim()[0] > -quality_plot.OFF_SCALE
    plt.close(fig)
    plt.close(fig2)


def test_seeds_on_other_kinds_of_cpu_are_not_paired_and_the_table_names_the_cpu():
    """bf16 kernels round differently on AMX and AVX512-BF16: a variant seed whose record ran
    on another kind of CPU than its base's is left out, named; the table says the kind."""
    base = pipeline_recs(3)
    for r in base:
        r["host"] = {"cpus": 2, "machine": "x86_64", "cpu": "Xeon", "bf16": "amx"}
    var = [full_rec(s, {"stage2": (0.85 + s / 100, 0.84), "stage3": (0.9, 0.9)}, run="pseudo",
                    copied=("stage2",)) for s in range(3)]
    for s, r in enumerate(var):
        r["stages"]["stage2"] = dict(base[s]["stages"]["stage2"],
                                     copied_from={"run": "pipeline", "path": "w"})
        r["host"] = dict(base[s]["host"], bf16="avx512_bf16" if s == 1 else "amx")
    agg = qr.aggregate(base + var, ROWS3, RUNS3)
    res = by_kind(qpair.paired(base + var, agg, RUNS3), "variant - base")
    assert res["seeds"] == [0, 2]
    assert res["dropped"] == ["seed 1: pseudo ran on CPU kind avx512_bf16, pipeline on amx "
                              "(bf16 kernels differ)"]
    md = qr.format_markdown(base + var, agg)
    assert "2-core CPU (x86_64, Xeon, bf16 on amx)" in md
    line = next(l for l in md.splitlines() if l.startswith("| s3 pl |"))
    assert line.endswith("| abc1234 on amx + avx512_bf16 |")
    assert bq.host_info()["bf16"] in ("amx", "avx512_bf16", "none")
    assert qr.host_label({"host": {"cpus": 2}}) == "unknown"


def test_a_run_with_several_bases_is_paired_with_each():
    """``base`` as a list: one ``variant - base`` comparison per base run, each with its own
    per-seed differences (frozen_fp32_auto against [CLS] and against mean pooling)."""
    runs = {"cls": {"rows": {"stage2": "cls"}}, "mean": {"base": "cls", "rows": {"stage2": "m"}},
            "auto": {"base": ["cls", "mean"], "rows": {"stage2": "a"}}}
    assert qpair.comparisons(runs) == [("variant - base", ("mean", "stage2"), ("cls", "stage2")),
                                       ("variant - base", ("auto", "stage2"), ("cls", "stage2")),
                                       ("variant - base", ("auto", "stage2"), ("mean", "stage2"))]
    recs = [full_rec(s, {"stage2": (val, p)}, run=run)
            for s in range(3) for run, val, p in (("cls", 0.80, 0.70), ("mean", 0.82, 0.75),
                                                   ("auto", 0.83, 0.80))]
    agg = qr.aggregate(recs, {k: v["rows"] for k, v in runs.items()}, runs)
    res = qpair.paired(recs, agg, runs)["cora"]
    assert [(r["a"][0], r["b"][0], r["seeds"]) for r in res] == [
        ("mean", "cls", [0, 1, 2]), ("auto", "cls", [0, 1, 2]), ("auto", "mean", [0, 1, 2])]
    assert res[1]["val"]["mean"] == pytest.approx(0.03) and res[2]["val"]["mean"] == \
        pytest.approx(0.01)
    test_a = [r["stages"]["stage2"]["test_acc"] for r in recs if r["run"] == "auto"]
    test_m = [r["stages"]["stage2"]["test_acc"] for r in recs if r["run"] == "mean"]
    assert res[2]["test"]["mean"] == pytest.approx(np.mean(np.subtract(test_a, test_m)))


def test_budget_lines_name_overrides_beyond_the_runs_definition():
    """A run started with ``--set`` (or whose definition changed since) says so in its budget
    line; paths and seed never count, and an undefined run shows nothing extra."""
    base = ["data.tag_path=t", "data.part_dir=p", "output_dir=o/seed0", "seed=0", "stages=[2]"]
    plain = dict(rec(0, 0.5, 0.5), overrides=base, budget={"stage2.epochs": 20})
    extra = dict(rec(1, 0.5, 0.5), overrides=[*base, "launch.precision=bf16"],
                 budget={"stage2.epochs": 20})
    defined = {("arxiv", "pipeline"): ["stages=[2]"]}.get

    def lookup(part, run):
        return defined((part, run))

    assert qr.extra_overrides(plain, lookup) == []
    assert qr.extra_overrides(extra, lookup) == ["launch.precision=bf16"]
    assert qr.extra_overrides(extra, None) == []
    assert qr.extra_overrides(dict(extra, run="gone"), lookup) == []
    md = qr.format_markdown([plain, extra], qr.aggregate([plain, extra], ROWS), defined=lookup)
    lines = [l for l in md.splitlines() if l.startswith("- budget of pipeline")]
    assert lines == ["- budget of pipeline: stage2.epochs=20",
                     "- budget of pipeline: stage2.epochs=20; beyond the run's definition: "
                     "launch.precision=bf16"], lines


def test_a_row_is_paired_against_another_runs_row_by_seed():
    """``against``: a pipeline's stage 3 against another run's stage 2 (issue 22: the tuned
    frozen LM + RGCN, a stage-2-only run), paired by seed; an absent row gives no comparison."""
    runs = {"pipeline": {"rows": {"stage2": "s2", "stage3": "s3"},
                         "against": [("stage3", "tuned", "stage2"), ("stage3", "gone", "stage2")]},
            "tuned": {"rows": {"stage2": "tuned frozen"}}}
    assert qpair.comparisons(runs) == [
        ("stage 3 - stage 2", ("pipeline", "stage3"), ("pipeline", "stage2")),
        ("against another run", ("pipeline", "stage3"), ("tuned", "stage2"))]
    recs = [full_rec(s, {"stage2": (0.80, 0.70), "stage3": (0.82, 0.78)}) for s in range(4)]
    recs += [full_rec(s, {"stage2": (0.81, 0.74)}, run="tuned") for s in (0, 1, 2)]
    agg = qr.aggregate(recs, {k: v["rows"] for k, v in runs.items()}, runs)
    res = by_kind(qpair.paired(recs, agg, runs), "against another run")
    assert res["seeds"] == [0, 1, 2] and res["label_b"] == "tuned frozen"
    diffs = [recs[s]["stages"]["stage3"]["test_acc"] - recs[4 + s]["stages"]["stage2"]["test_acc"]
             for s in range(3)]
    assert res["test"]["mean"] == pytest.approx(np.mean(diffs))
    assert res["val"]["mean"] == pytest.approx(0.01)
    assert res["boot"] is not None and res["dropped"] == []


def test_issue_22_targets_pair_each_pipeline_against_the_tuned_frozen_row():
    """Issue 22: every pipeline's stage 3 is paired against the tuned frozen LM + RGCN and
    checked at +2 points on the random split and > 0 on the time split, from the interval."""
    import quality_defs as qd
    import quality_targets as qt

    kinds = [(k, a, b) for k, a, b in qpair.comparisons(qd.RUNS) if k == "against another run"]
    assert [a for _, a, _ in kinds] == [
        ("pipeline", "stage3"), ("pipeline_mean", "stage3"), ("pipeline_mean_tuned", "stage3"),
        ("pipeline_mean_tuned", "stage2"), ("pipeline_mean_tuned_cf", "stage3"),
        ("pipeline_mean_tuned_cf", "stage2"), ("pipeline_mean_tuned_lora", "stage3"),
        ("pipeline_mean_tuned_lora", "stage2"), ("pipeline_s1long", "stage3")]
    assert qt.PIPELINES == [qd.RUNS[r]["rows"]["stage3"] for r in (
        "pipeline", "pipeline_mean", "pipeline_mean_tuned", "pipeline_mean_tuned_cf",
        "pipeline_mean_tuned_lora", "pipeline_s1long")]
    assert {b for _, _, b in kinds} == {(qd.TUNED_FROZEN, "stage2")}

    def row(label, test):
        return {"label": label, "test_acc": (test, 0.01), "n": 5}

    def res(a, lo, hi):
        return {"label_a": a, "label_b": qt.TUNED,
                "test": {"mean": (lo + hi) / 2, "lo": lo, "hi": hi, "n": 5, "sd": 0.01}}

    agg = {p: [row(qt.TUNED, 0.78), row(qt.FULL, 0.80)] for p in ("arxiv_random", "arxiv")}
    paired = {"arxiv_random": [res(qt.FULL, 0.019, 0.03)], "arxiv": [res(qt.FULL, 0.001, 0.04)]}
    got = {(c["part"], c["what"]): c["holds"] for c in qt.check(agg, paired=paired)
           if "tuned" in c["what"]}
    assert got == {("arxiv_random", f"{qt.FULL} >= tuned frozen LM + RGCN + 2 points"):
                   "not resolved",  # the interval's lower bound 1.9 < 2
                   ("arxiv", f"{qt.FULL} > tuned frozen LM + RGCN"): "yes"}


def test_welch_interval_equals_the_welch_satterthwaite_formula():
    rng = np.random.default_rng(3)
    a, b = 0.78 + 0.003 * rng.standard_normal(5), 0.77 + 0.006 * rng.standard_normal(4)
    va, vb = a.var(ddof=1) / 5, b.var(ddof=1) / 4
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 3)
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    w = qs.welch_interval(a, b)
    assert (w["n_a"], w["n_b"]) == (5, 4) and w["df"] == pytest.approx(df)
    assert w["mean"] == pytest.approx(a.mean() - b.mean())
    assert (w["lo"], w["hi"]) == pytest.approx((a.mean() - b.mean() - half,
                                                a.mean() - b.mean() + half))
    one = qs.welch_interval([0.7], b)
    assert one["mean"] == pytest.approx(0.7 - b.mean()) and math.isnan(one["lo"])


def test_rows_on_other_cpu_kinds_get_the_unpaired_welch_interval_and_targets_use_it():
    """Seeds whose records ran on different kinds of CPU do not pair; the comparison then
    carries the Welch interval over all seeds of both rows, which the targets fall back on."""
    import quality_targets as qt

    runs = {"pipeline": {"rows": {"stage3": qt.FULL}, "against": [("stage3", "t", "stage2")]},
            "t": {"rows": {"stage2": qt.TUNED}}}
    recs = [full_rec(s, {"stage3": (0.80, 0.70)}) for s in range(4)]
    recs += [full_rec(s, {"stage2": (0.81, 0.74)}, run="t") for s in range(4)]
    for r in recs:
        r["part"] = "arxiv_random"
        r["host"] = {"cpus": 2, "bf16": "amx" if r["run"] == "pipeline" or r["seed"] == 0
                     else "avx512_bf16"}
    agg = qr.aggregate(recs, {k: v["rows"] for k, v in runs.items()}, runs)
    res, = qpair.paired(recs, agg, runs)["arxiv_random"]
    assert res["seeds"] == [0] and len(res["dropped"]) == 3
    acc = {(r["run"], r["seed"]): r["stages"][next(iter(r["stages"]))]["test_acc"] for r in recs}
    want = qs.welch_interval([acc[("pipeline", s)] for s in range(4)],
                             [acc[("t", s)] for s in range(4)])
    assert res["welch"] == pytest.approx(want)
    assert "unpaired over all seeds of both rows (Welch t 95 %, 4 and 4 seeds)" in \
        "\n".join(qpair.markdown({"arxiv_random": [res]}))
    c, = [c for c in qt.check(agg, paired={"arxiv_random": [res]}) if "tuned" in c["what"]]
    assert c["unpaired"] and c["interval"] == pytest.approx((want["lo"], want["hi"]))
    assert c["holds"] == "no (unpaired)"  # 0.70 vs 0.74 on 400 nodes: far below +2 points
    import matplotlib.pyplot as plt
    import quality_plot
    fig = quality_plot.draw(agg, {"arxiv_random": [res]})
    welch, = [ln for ln in fig.axes[1].get_lines()
              if ln.get_label() == "Welch 95 % over all seeds (unpaired)"]
    assert list(welch.get_xdata()) == pytest.approx([100 * want["lo"], 100 * want["hi"]])
    plt.close(fig)
    for r in recs:
        r["host"]["bf16"] = "amx"
    same = qpair.paired(recs, agg, runs)["arxiv_random"][0]
    assert same["seeds"] == [0, 1, 2, 3] and same["welch"] is None
