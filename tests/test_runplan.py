"""The run plan (stages, done, start points, train command), the job-supervision rule shared by
the launcher and the Ray driver, and the LM-embedding cache's key."""
from __future__ import annotations

import sys

import pytest
import torch

from launch.watch import JobWatch
from lmgnn_dist.run.checkpoint import write_stage
from lmgnn_dist.config import load_config
from lmgnn_dist.run.runplan import PlanError, RunPlan


def _cfg(tmp_path, *overrides):
    return load_config(None, [f"output_dir={tmp_path}", *overrides])


def test_plan_lists_configured_stages_and_filters_by_name(tmp_path):
    plan = RunPlan.from_config(_cfg(tmp_path))
    assert list(plan.stages) == ["baseline", "stage1", "stage2", "stage3"]
    only = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "stages=[2,3]"), only=["stage3"])
    assert list(only.stages) == ["stage3"]
    with pytest.raises(PlanError, match=r"stage\(s\) \['stage1'\] are not in this run's plan"):
        RunPlan.from_config(_cfg(tmp_path, "stages=[2]"), only=["stage1"])


def test_start_points_follow_the_complete_checkpoints(tmp_path):
    plan = RunPlan.from_config(_cfg(tmp_path))
    assert plan.start_of("stage2").lm_dir is None  # no stage 1: the configured LMs
    with pytest.raises(PlanError, match="stage 3 needs the stage-2 checkpoint"):
        plan.start_of("stage3")
    write_stage(str(tmp_path), "stage1", {"seconds": 1.0})
    write_stage(str(tmp_path), "stage2", {"seconds": 1.0})
    start = plan.start_of("stage3")
    assert start.lm_dir == tmp_path / "stage1" and start.head_dir == tmp_path / "stage2"
    assert plan.start_of("baseline").lm_dir is None
    assert plan.to_run() == ["baseline", "stage3"]  # resume: complete stages are skipped
    assert RunPlan.from_config(_cfg(tmp_path), resume=False).to_run() == list(plan.stages)
    assert list(plan.results()) == ["stage1", "stage2"]


def test_check_refuses_stage3_alone_without_stage2_before_anything_starts(tmp_path):
    plan = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "stages=[3]"))
    with pytest.raises(PlanError, match="run stage 2 first"):
        plan.check()
    RunPlan.from_config(_cfg(tmp_path, "stages=[2,3]")).check()  # stage 2 runs first: fine


def test_train_command_passes_typed_options(tmp_path):
    plan = RunPlan.from_config(_cfg(tmp_path))
    assert plan.train_command("c.yaml") == [sys.executable, "-m", "lmgnn_dist.jobs.train",
                                            "--config", "c.yaml", "--resume"]
    assert plan.train_command("c.yaml", ["stage2"])[-2:] == ["--stage", "stage2"]
    from lmgnn_dist.jobs.train import parse_args

    args = parse_args(plan.train_command("c.yaml", ["stage2"])[3:] + ["stage3.max_steps=2"])
    assert args.stage == ["stage2"] and args.resume and args.overrides == ["stage3.max_steps=2"]


def test_prepare_output_dir_without_resume_removes_only_planned_checkpoints(tmp_path):
    for name in ("stage1", "stage2", "stage3"):
        write_stage(str(tmp_path), name, {"seconds": 1.0})
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".stage2.tmp-77").mkdir()
    RunPlan.from_config(_cfg(tmp_path, "stages=[3]", "baseline=false"), resume=False
                        ).prepare_output_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "stage1", "stage2"]


def test_job_watch_fails_on_first_error_and_waits_for_servers():
    watch = JobWatch(server_grace_s=10)
    running = [("server-0.0", True, None), ("trainer-0", False, None)]
    assert watch.check(running, now=0) is None
    failed = watch.check([("server-0.0", True, None), ("trainer-0", False, -9)], now=1)
    assert (failed.rc, failed.failed) == (-9, "trainer-0")
    trainers_done = [("server-0.0", True, None), ("trainer-0", False, 0)]
    assert watch.check(trainers_done, now=2) is None  # the servers get their grace period
    late = watch.check(trainers_done, now=13)
    assert late.rc == 0 and late.servers_timed_out
    done = JobWatch().check([("server-0.0", True, 0), ("trainer-0", False, 0)], now=0)
    assert done.rc == 0 and not done.servers_timed_out and done.failed is None


def test_weights_key_names_the_weights_not_the_path(tmp_path, tiny_bert_dir):
    """The LM-embedding cache's key: equal for equal weights from another folder, different
    once a weight changes."""
    from lmgnn_dist.model.joint import NodeLMs
    from lmgnn_dist.model.lm import LMEncoder

    a = NodeLMs({"shared": LMEncoder(str(tiny_bert_dir))}, {"paper": "shared"})
    a.lms["shared"].lm.save_pretrained(tmp_path / "copy")
    b = NodeLMs({"shared": LMEncoder(str(tmp_path / "copy"))}, {"paper": "shared"})
    assert a.weights_key() == b.weights_key()
    with torch.no_grad():
        next(b.parameters())[0, 0] += 1e-3
    assert a.weights_key() != b.weights_key()
    other_map = NodeLMs({"shared": LMEncoder(str(tiny_bert_dir))}, {"venue": "shared"})
    assert other_map.weights_key() != a.weights_key()


def test_a_checkpoint_is_reused_only_for_the_inputs_it_was_trained_on(tmp_path):
    """Recorded inputs decide reuse; a changed stage makes the stages that start from it
    stale too (their ``starts_from`` digest changes); ``resume: strict`` refuses."""
    fp = {"files": {"nodes/a.parquet": {"size": 3, "mtime_ns": 1}}, "options": {"k": 1}}
    cfg = _cfg(tmp_path, "baseline=false")
    plan = RunPlan.from_config(cfg, fingerprint=fp)
    for name in ("stage1", "stage2", "stage3"):
        write_stage(str(tmp_path), name, {"inputs": plan.inputs(name)})
    assert plan.to_run() == [] and plan.stale() == {}
    moved = dict(fp, files={"nodes/a.parquet": {"size": 3, "mtime_ns": 2}})  # touched only
    assert RunPlan.from_config(cfg, fingerprint=moved).stale() == {}
    s3 = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "stage3.lm_lr=1e-3"),
                             fingerprint=fp)
    assert s3.stale() == {"stage3": ["stage3.lm_lr 1e-05 -> 0.001"]}
    assert s3.to_run() == ["stage3"]
    s1 = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "stage1.lm_lr=1e-3"),
                             fingerprint=fp)
    assert s1.stale() == {"stage1": ["stage1.lm_lr 2e-05 -> 0.001"],
                          "stage2": ["stage1, which it starts from"],
                          "stage3": ["stage1, which it starts from",
                                     "stage2, which it starts from"]}
    assert s1.start_of("stage2").lm_dir is None  # never the stale stage-1 LM
    edited = dict(fp, files={"nodes/a.parquet": {"size": 4, "mtime_ns": 1}})
    assert RunPlan.from_config(cfg, fingerprint=edited).stale()["stage1"] == [
        "the partitions (TAG content or partition options)"]
    strict = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "resume=strict",
                                      "model.hidden_size=8"), fingerprint=fp)
    with pytest.raises(PlanError, match=r"^resume: strict: stage2 in .* was trained on other "
                       r"inputs \(model.hidden_size 256 -> 8\); use resume: true"):
        strict.check()  # stage 1 (link prediction) has no GNN: kept
    gnn = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "model.gnn=rgat"),
                              fingerprint=fp)
    assert list(gnn.stale()) == ["stage2", "stage3"]
    task_tuned = RunPlan.from_config(_cfg(tmp_path, "baseline=false", "stage1.objective=task"),
                                     fingerprint=fp)  # its MLP head reads hidden_size, dropout
    assert task_tuned.stale()["stage1"] == ["model.dropout '<unset>' -> 0.5",
                                            "model.hidden_size '<unset>' -> 256",
                                            "stage1.objective 'link_prediction' -> 'task'"]
    assert "hidden_size" in task_tuned.inputs("stage1")["config"]["model"]
    assert "hidden_size" not in plan.inputs("stage1")["config"]["model"]
    write_stage(str(tmp_path), "stage2", {"val_acc": 0.5})  # written before inputs existed
    assert plan.changes("stage2") == ["it records no inputs (written by an older version)"]
    assert RunPlan.from_config(cfg).to_run() == []  # no fingerprint: nothing compared
