"""The Ray driver: one placement group + one actor per machine per stage job, on a local Ray.

Plus the pure pieces it shares with the launcher: the per-process env contract
(``launch.procs.process_specs``) and how machines map onto Ray nodes.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
import yaml

from launch.hosts import Host
from launch.procs import process_specs

from run_helpers import held_out_acc, own_processes, tiny_config


def test_process_specs_is_the_launcher_env_contract(tmp_path):
    hosts = [Host("127.0.0.1", 1000), Host("127.0.0.2", 1001)]
    specs = process_specs(hosts, str(tmp_path / "g.json"), str(tmp_path / "ips.txt"),
                          num_trainers=2, job_id="abcd", master_port=4242)
    assert [s.name for s in specs] == ["server-0.0", "server-1.0", "trainer-0", "trainer-1",
                                       "trainer-2", "trainer-3"]
    assert [s.machine for s in specs] == [0, 1, 0, 0, 1, 1]
    t3 = specs[-1].env
    assert (t3["DGL_ROLE"], t3["RANK"], t3["LOCAL_RANK"], t3["WORLD_SIZE"]) == ("client", "3", "1", "4")
    assert (t3["MASTER_ADDR"], t3["MASTER_PORT"], t3["DGL_NUM_CLIENT"]) == ("127.0.0.1", "4242", "4")
    assert (t3["LMGNN_MACHINE_IP"], t3["LMGNN_MACHINE_ID"], t3["LMGNN_JOB_ID"]) == ("127.0.0.2", "1", "abcd")
    assert specs[1].env["DGL_SERVER_ID"] == "1" and specs[1].is_server
    assert t3["DGL_IP_CONFIG"] == str(tmp_path / "ips.txt")
    remote = process_specs([Host("10.0.0.1", 30050), Host("10.0.0.2", 30050)], "g.json", "ips")
    assert all("LMGNN_MACHINE_IP" not in s.env for s in remote)
    assert remote[-1].env["MASTER_PORT"] == "29500"


def test_machines_map_to_loopback_or_node_ips():
    from lmgnn_dist.drivers.ray_job import RayPipelineError, job_hosts

    one = [{"ip": "10.1.1.1", "node_id": "a"}] * 3
    assert [h.ip for h in job_hosts(one)] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    spread = [{"ip": "10.1.1.1", "node_id": "a"}, {"ip": "10.1.1.2", "node_id": "b"}]
    assert [h.ip for h in job_hosts(spread)] == ["10.1.1.1", "10.1.1.2"]
    with pytest.raises(RayPipelineError, match="3 machines on 2 nodes"):
        job_hosts(spread + [{"ip": "10.1.1.1", "node_id": "a"}])


def _ray_pipeline(cfg_path, *extra, timeout=420):
    return subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.ray_pipeline", "--config",
                           str(cfg_path), "--local-cpus", "2", "--verbose", *extra],
                          capture_output=True, text=True, timeout=timeout)


def test_ray_pipeline_end_to_end_one_job_per_stage(tmp_path, tiny_tag_dir, tiny_bert_dir):
    import torch
    from transformers import AutoModel

    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = _ray_pipeline(path)
    log = out.stdout
    assert out.returncode == 0, log[-4000:] + out.stderr[-4000:]
    names = ["baseline", "stage1", "stage2", "stage3"]
    # each stage had exactly one job (no restart), on its own placement group of 2 loopback
    # machines, whose trainers ran exactly that one stage
    jobs = re.findall(r"\[ray-pipeline\] (\w+): starting its job \(attempt (\d+)\)", log)
    assert jobs == [(n, "1") for n in names], jobs
    placed = re.findall(r"\[ray-pipeline\] (\w+): 2 machines \(loopback machines on one node", log)
    assert placed == names, placed
    ran = re.findall(r"\[m0 trainer-0\] \[trainer\] stages run: (.*)", log)
    assert ran == names, ran
    assert all(f"[ray-pipeline] {name}: done" in log for name in names)
    assert "Machine (0) group (0)" in log and "Machine (1) group (0)" in log

    run = tmp_path / "run"
    res = json.loads((run / "results.json").read_text())
    # the pipeline's keys (plus any the trainers add to their results.json)
    assert set(res) >= {"config", "stages", "wall_s", "peak_rss_job_mb", "restarts"}
    assert list(res["stages"]) == names and res["restarts"] == 0 and res["peak_rss_job_mb"] > 0
    for name in names:
        assert res["stages"][name] == json.loads((run / name / "metrics.json").read_text())
    assert held_out_acc(res["stages"]["stage2"]) > 0.7 and held_out_acc(res["stages"]["stage3"]) > 0.7
    assert "3: joint LM+GNN fine-tune" in log and res["config"] == yaml.safe_load(
        (run / "config.yaml").read_text())

    # stage k+1 started from stage k's checkpoint
    assert res["stages"]["baseline"]["lm"] == str(tiny_bert_dir)
    assert res["stages"]["stage2"]["lm"] == str(run / "stage1" / "lm")
    key = "encoder.layer.0.attention.self.query.weight"
    base = AutoModel.from_pretrained(tiny_bert_dir).state_dict()[key]
    s1 = AutoModel.from_pretrained(run / "stage1" / "lm").state_dict()[key]
    s3 = AutoModel.from_pretrained(run / "stage3" / "lm").state_dict()[key]
    # (the saved LMs are those of the step each stage reports keeping)
    assert torch.equal(s1, base) == (res["stages"]["stage1"]["best_step"] == 0)
    if res["stages"]["stage3"]["lm_step"] == 0:  # stage 3 kept the LMs it started from
        assert torch.equal(s3, s1)
    else:
        assert not torch.equal(s3, s1)
        if not torch.equal(s1, base):  # (stage 1 may keep the pre-trained LM: then s1 = base)
            assert (s3 - s1).norm() < (s3 - base).norm()
    time.sleep(1)
    assert own_processes(str(tmp_path)) == []  # every server/trainer was stopped

    # a second run finds every checkpoint complete and starts no job
    again = _ray_pipeline(path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("is complete; not run again") == 4
    assert "starting its job" not in again.stdout
    assert json.loads((run / "results.json").read_text())["stages"] == res["stages"]


class _FakeJob:
    """Stands in for ``StageJob`` (no Ray): ``script[name]`` lists each attempt's exit code;
    an attempt with code 0 writes the stage's checkpoint unless the code is ``"0-no-ckpt"``."""

    script: dict = {}
    calls: list = []

    def __init__(self, cfg, name, command, part_config, placement_timeout_s, output=None):
        self.cfg, self.name, self.command, self.peak_rss = cfg, name, command, 0

    def run(self):
        from lmgnn_dist.run.checkpoint import write_stage

        attempt = sum(1 for n, _ in self.calls if n == self.name)
        self.calls.append((self.name, self.command))
        codes = self.script.get(self.name, [0])
        rc = codes[min(attempt, len(codes) - 1)]
        if rc == 0:  # with the inputs a trainer records (the partitions' fingerprint)
            from partition.fingerprint import fingerprint
            from lmgnn_dist.drivers.prepare import partition_options
            from lmgnn_dist.run.runplan import RunPlan

            fp = fingerprint(self.cfg.data.tag_path, partition_options(self.cfg))
            write_stage(self.cfg.output_dir, self.name,
                        {"seconds": 1.0, "peak_rss_mb_max_trainer": 1.0, "loss_first": 1.0,
                         "loss_last": 0.5, "attempt": attempt,
                         "inputs": RunPlan.from_config(self.cfg, fingerprint=fp).inputs(
                             self.name)})
        return 0 if rc == "0-no-ckpt" else rc


def _fake_run(monkeypatch, tmp_path, script, *overrides):
    import lmgnn_dist.drivers.prepare as prep
    import lmgnn_dist.drivers.ray_pipeline as rp
    from lmgnn_dist.config import load_config

    monkeypatch.setattr(prep, "ensure_partitions", lambda cfg, files=None: {"part_config": "parts/g.json"})
    monkeypatch.setattr(rp, "StageJob", _FakeJob)
    _FakeJob.script, _FakeJob.calls = script, []
    cfg = load_config(None, [f"output_dir={tmp_path / 'run'}", *overrides])
    rc = rp.run_pipeline(cfg)
    return rc, [n for n, _ in _FakeJob.calls]


def test_ray_driver_restarts_only_the_failed_stage(monkeypatch, tmp_path, capsys):
    rc, calls = _fake_run(monkeypatch, tmp_path, {"stage2": [-9, 0]})
    assert rc == 0 and calls == ["baseline", "stage1", "stage2", "stage2", "stage3"]
    assert "stage2's job failed with exit code -9; restart 1/2" in capsys.readouterr().out
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["restarts"] == 1 and res["stages"]["stage2"]["attempt"] == 1
    cmd = dict(_FakeJob.calls)["stage3"]
    assert cmd[-3:] == ["--resume", "--stage", "stage3"]  # that job runs stage 3 alone
    assert dict(_FakeJob.calls)["baseline"][-2:] == ["--stage", "baseline"]
    # all checkpoints complete: a second run starts no job
    rc, calls = _fake_run(monkeypatch, tmp_path, {})
    assert rc == 0 and calls == []


def test_ray_driver_never_retries_exit_code_2_and_stops_after_max_restarts(monkeypatch, tmp_path):
    rc, calls = _fake_run(monkeypatch, tmp_path / "a", {"stage1": [2, 0]})
    assert rc == 2 and calls == ["baseline", "stage1"]
    rc, calls = _fake_run(monkeypatch, tmp_path / "b", {"stage1": [-9]}, "launch.max_restarts=1")
    assert rc == -9 and calls == ["baseline", "stage1", "stage1"]
    assert not (tmp_path / "b" / "run" / "results.json").exists()
    # a job that exits 0 without its checkpoint counts as failed (exit code 1) and is retried
    rc, calls = _fake_run(monkeypatch, tmp_path / "c", {"baseline": ["0-no-ckpt", 0]})
    assert rc == 0 and calls[:2] == ["baseline", "baseline"]
