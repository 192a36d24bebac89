"""What a person sees: the quiet console (one bar + one line per stage, the table, the path of
report.png), every process's full output in <output_dir>/logs/, TensorBoard event files with
the scalars, report.png with its panels, the results table naming what ran, and the console
scripts with their --help."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from run_helpers import tiny_config

from lmgnn_dist.drivers.report import PANELS, panels_of, write_report
from lmgnn_dist.drivers.results import format_table
from lmgnn_dist.stages import stage

REPO = Path(__file__).resolve().parents[1]


def _results(stage3: bool = True) -> dict:
    """A results.json as a tiny run writes it (node classification)."""
    st = lambda v, t: {"val_acc": v, "test_acc": t, "seconds": 1.0,  # noqa: E731
                       "peak_rss_mb_max_trainer": 100.0}
    stages = {
        "baseline": {**st(0.8, 0.75), "losses": [0.7, 0.5, 0.4], "best_epoch": 2,
                     "val_history": [{"acc": 0.6}, {"acc": 0.7}, {"acc": 0.8}]},
        "stage1": {"losses": [4.0, 3.5, 3.1, 3.0], "loss_first": 4.0, "loss_last": 3.0,
                   "seconds": 1.0, "peak_rss_mb_max_trainer": 100.0},
        "stage2": {**st(0.9, 0.85), "losses": [0.6, 0.3, 0.2], "best_epoch": 1,
                   "val_history": [{"acc": 0.7}, {"acc": 0.9}, {"acc": 0.9}]},
    }
    if stage3:
        stages["stage3"] = {**st(0.93, 0.86), "losses": [0.2, 0.25, 0.21], "best_step": 3,
                            "head": "refit", "lm_step": 6,
                            "val_history": [{"step": 0, "acc": 0.9}, {"step": 3, "acc": 0.92},
                                            {"step": 6, "acc": 0.91}],
                            "refit": {"val_acc": 0.93, "test_acc": 0.86, "best_epoch": 1,
                                      "lm_step": 6, "kept": True,
                                      "val_history": [{"step": 1, "acc": 0.88},
                                                      {"step": 2, "acc": 0.93}]},
                            "time_split_s": {"sampling": 0.1, "lm_grad_forward": 2.0,
                                             "backward_optimizer": 3.5}}
    return {"config": {"data": {"graph_name": "tiny"}, "model": {"lm": "bert"},
                       "stage3": {"mode": "joint"}},
            "task": "node_classification", "primary": "acc", "stages": stages, "wall_s": 9.0}


def _line(ax, label):
    return next(ln for ln in ax.get_lines() if ln.get_label() == label)


def test_report_has_every_panel_and_stage3_validation_beside_stage2(tmp_path):
    import matplotlib.pyplot as plt

    from lmgnn_dist.drivers.report import draw_report

    fig = draw_report(_results())
    axes = {ax.get_title(): ax for ax in fig.axes}
    assert list(axes) == list(PANELS)  # all seven, in order
    # stage 3 per step: every validation point, the best ringed, the re-fit at its LMs' step
    s3 = axes["stage 3: validation per step"]
    joint = _line(s3, "joint model (step 0: stage 2's)")
    assert list(joint.get_xdata()) == [0, 3, 6] and list(joint.get_ydata()) == [0.9, 0.92, 0.91]
    assert list(_line(s3, "best joint model (step 3)").get_ydata()) == [0.92]
    star = _line(s3, "GNN re-fit on these LMs (kept)")
    assert list(star.get_xdata()) == [6] and list(star.get_ydata()) == [0.93]
    assert list(_line(s3, "kept: refit head, LMs of step 6 (re-encoded)").get_ydata()) == [0.93] * 2
    # per epoch: the baseline's and stage 2's curves beside the re-fit's
    ep = axes["validation per epoch (GNN heads)"]
    assert list(_line(ep, "stage 3 re-fit (LMs of step 6)").get_ydata()) == [0.88, 0.93]
    assert list(ep.get_lines()[2].get_ydata()) == [0.7, 0.9, 0.9]  # stage 2 (after baseline's 2)
    plt.close(fig)
    path = write_report(_results(), tmp_path / "report.png")
    assert path.stat().st_size > 10_000 and panels_of(path) == list(PANELS)
    # a run without stage 3: its three panels are left out, not drawn empty
    assert panels_of(write_report(_results(stage3=False), tmp_path / "r2.png")) == [
        PANELS[0], PANELS[1], PANELS[3], PANELS[5]]
    # the frozen-LM baseline alone
    only = {"baseline": _results()["stages"]["baseline"]}
    fig = draw_report(dict(_results(), stages=only))
    assert [ax.get_title() for ax in fig.axes] == [PANELS[1], PANELS[3], PANELS[5]]
    plt.close(fig)


def test_table_names_what_ran():
    stages = _results()["stages"]
    assert "3: joint LM+GNN fine-tune" in format_table(stages, "acc")
    stages["stage1"]["variant"] = "task"  # recorded by the stage, not guessed
    assert "1: LM fine-tune on the task (MLP)" in format_table(stages, "acc")
    stages["stage3"]["variant"] = "lm_only"
    lm_only = format_table(stages, "acc")
    assert stage("stage3").label("lm_only").row in lm_only and "joint" not in lm_only
    stages["stage3"].update(variant="default", steps=0)
    assert "3: re-encode + evaluate (0 steps)" in format_table(stages, "acc")


def _entry_points() -> dict:
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"(lmgnn-[a-z]+)=([\w.]+:\w+)"', text))


def test_console_scripts_resolve_and_list_the_keys():
    eps = _entry_points()
    assert set(eps) == {"lmgnn-run", "lmgnn-embed", "lmgnn-partition", "lmgnn-ray"}
    assert eps["lmgnn-run"] == "lmgnn_dist.drivers.pipeline:main"
    for name, target in eps.items():
        module, func = target.split(":")
        code = (f"import sys; sys.argv = ['{name}', '--help']; from {module} import {func}; "
                f"sys.exit({func}())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
        assert out.returncode == 0, (name, out.stderr[-2000:])
        if name == "lmgnn-partition":
            assert "--add-reverse-edges" in out.stdout
        else:
            assert "config keys most users change" in out.stdout, name
            assert "data.add_reverse_edges" in out.stdout and "task.kind" in out.stdout


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("quiet")
    cfg = tiny_config(root, tiny_tag_dir, tiny_bert_dir, resume=False)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", str(path)],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return root / "run", out


def test_console_shows_one_bar_and_one_line_per_stage(quiet_run):
    run, out = quiet_run
    lines = out.stdout.splitlines()
    for chatter in ("Initialize the distributed services", "Client [", "Server is exiting",
                    "find_unused_parameters", "[stage1] step", "[stage3] step", "Converting",
                    "Metis"):
        assert chatter not in out.stdout, chatter
    for name, unit in (("baseline", "epoch"), ("stage1", "step"), ("stage2", "epoch"),
                       ("stage3", "step")):
        bars = [ln for ln in lines if ln.startswith(f"{name}: 100%")]
        assert len(bars) == 1 and f"{unit}/s" in bars[0] and "loss" in bars[0], bars
        assert sum(ln.startswith(f"[{name}] done in") for ln in lines) == 1
    assert len(lines) <= 30, out.stdout
    assert "3: joint LM+GNN fine-tune" in out.stdout
    assert lines[-1] == f"report: {run / 'report.png'}"
    assert panels_of(run / "report.png") == list(PANELS)
    assert out.stderr.strip() == "", out.stderr[-2000:]


def test_every_process_output_is_in_its_log(quiet_run):
    run, _ = quiet_run
    logs = {p.name for p in (run / "logs").iterdir()}
    assert {"trainer-0.log", "trainer-1.log", "server-0.0.log", "server-1.0.log"} <= logs
    t0 = (run / "logs" / "trainer-0.log").read_text()
    for line in ("Initialize the distributed services", "[stage1] step    1/6",
                 "[stage3] step    6/6", "[stage2] epoch    5/5", "[stage3] done in"):
        assert line in t0, line
    assert "::console::" not in t0 and "::bar::" not in t0  # marks are for the launcher
    # the homogeneous tiny graph has no parameter a step can leave unused: DDP does not search
    assert "find_unused_parameters" not in t0
    assert "Server is exiting" in (run / "logs" / "server-0.0.log").read_text()


def test_tensorboard_files_hold_the_scalars(quiet_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = quiet_run
    res = json.loads((run / "results.json").read_text())

    def scalars(stage):
        acc = EventAccumulator(str(run / "tb" / stage))
        acc.Reload()
        return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}

    s1 = scalars("stage1")
    assert s1["loss/train"] == pytest.approx(res["stages"]["stage1"]["losses"], rel=1e-5)
    s2 = scalars("stage2")
    assert len(s2["val/acc"]) == 5 and len(s2["loss/train_epoch"]) == 5
    assert [h["acc"] for h in res["stages"]["stage2"]["val_history"]] == pytest.approx(
        s2["val/acc"], rel=1e-5)
    assert len(s2["loss/train"]) == 5 * res["stages"]["stage2"]["steps_per_epoch"]
    s3 = scalars("stage3")
    assert len(s3["loss/train"]) == 6
    assert len(s3["cache/hit_rate"]) >= 1 and "lm_encodings/with_grad" in s3
    assert {k for k in s3 if k.startswith("time_split_s/")} == {
        f"time_split_s/{p}" for p in res["stages"]["stage3"]["time_split_s"]}
    assert "scalars" in EventAccumulator(str(run / "tb" / "baseline")).Reload().Tags()


class _Stream:
    def __init__(self, tty: bool):
        self.text, self.tty = "", tty

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return self.tty


@pytest.mark.parametrize("tty", [False, True])
def test_process_output_filters_the_console_and_logs_everything(tmp_path, tty):
    from launch.output import BAR_MARK, CONSOLE_MARK, ProcessOutput

    stream = _Stream(tty)
    out = ProcessOutput(str(tmp_path / "logs"), verbose=False, stream=stream)
    out("trainer-0", "Initialize the distributed services with graphbolt: False")
    out("trainer-0", BAR_MARK + "stage1:  50%|##  | 1/2 [00:01<00:01, 1.0step/s]")
    out("trainer-0", BAR_MARK + "stage1: 100%|####| 2/2 [00:02<00:00, 1.0step/s]")
    out("trainer-0", BAR_MARK + "stage1: 100%|####| 2/2 [00:02<00:00, 1.1step/s]")  # close
    out("trainer-0", CONSOLE_MARK + "[stage1] done in 2.0s  loss 3.0 -> 2.0")
    out("trainer-1", "error: ValueError: boom")
    out("launcher", "trainer-1 exited with code 3; stopping the others")
    out.close()
    if tty:  # redrawn in place, the summary line on a line of its own
        assert stream.text.startswith("\rstage1:  50%") and "\r" + "stage1: 100%" in stream.text
        assert "\x1b[K\n[stage1] done in 2.0s" in stream.text
    else:  # the end of the bar once (the 50% refresh came < 30 s after its start)
        assert stream.text.splitlines()[0] == "stage1: 100%|####| 2/2 [00:02<00:00, 1.0step/s]"
    shown = [ln.split("\r")[-1].replace("\x1b[K", "") for ln in stream.text.splitlines()]
    assert shown[-3:] == ["[stage1] done in 2.0s  loss 3.0 -> 2.0",
                          "[trainer-1] error: ValueError: boom",
                          "[launcher] trainer-1 exited with code 3; stopping the others"]
    assert "graphbolt" not in stream.text
    log = (tmp_path / "logs" / "trainer-0.log").read_text().splitlines()
    assert log[1:] == ["Initialize the distributed services with graphbolt: False",
                       "[stage1] done in 2.0s  loss 3.0 -> 2.0"]  # no marks, no bar lines
    assert out.last_line["trainer-1"] == "error: ValueError: boom"
