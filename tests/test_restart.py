"""Stage-granular fault tolerance of the launcher-based driver (``lmgnn_dist.drivers.pipeline``).

A real 2-server + 2-trainer run on the tiny graph whose trainer 1 (or machine 1's DGL
server) is SIGKILLed at a random step of stage 3 must restart the job once, keep the stages
finished before the kill, and end with the uninterrupted run's numbers; bad input (exit
code 2) is never retried.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from launch.watch import run_with_restarts
from lmgnn_dist.run.runplan import clean_stale_checkpoints

from run_helpers import comparable, own_processes, tiny_config


# ---------------------------------------------------------------------------- unit tests
def test_exit_code_2_is_never_retried():
    calls = []

    def attempt(i):
        calls.append(i)
        return 2

    assert run_with_restarts(attempt, max_restarts=5, what="job") == (2, 0)
    assert calls == [0]


def test_failures_are_retried_up_to_max_restarts():
    codes = iter([-9, 1, 0])
    assert run_with_restarts(lambda i: next(codes), max_restarts=2, what="job") == (0, 2)
    calls = []
    assert run_with_restarts(lambda i: calls.append(i) or 1, max_restarts=1, what="job") == (1, 1)
    assert calls == [0, 1]
    before = []
    run_with_restarts(lambda i: 0 if i == 1 else 137, 3, "job", before_retry=lambda: before.append(1))
    assert before == [1]


def test_stale_checkpoint_temp_folders_are_removed(tmp_path):
    (tmp_path / ".stage2.tmp-4242" / "lm").mkdir(parents=True)  # killed mid-write: no metrics
    (tmp_path / ".stage1.old-77").mkdir()
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "metrics.json").write_text("{}")
    (tmp_path / ".stage1.tmp-x").mkdir()  # not a pid: not ours
    (tmp_path / "notes.tmp-1").mkdir()
    assert clean_stale_checkpoints(str(tmp_path)) == [".stage1.old-77", ".stage2.tmp-4242"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".stage1.tmp-x", "notes.tmp-1", "stage1"]


def test_bad_launch_input_fails_once_with_exit_code_2(tmp_path, tiny_tag_dir, tiny_bert_dir):
    """The launcher's bad-input exit code 2 reaches the driver, which does not retry it (an
    env key only the launcher checks); a bad ip-config the driver refuses itself, before
    partitioning (issue 23)."""
    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    cfg["launch"] = {"debug_local": 2, "env": {"BAD KEY": "1"}, "max_restarts": 3}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert out.stderr.count("'BAD KEY' is not a valid environment variable name") == 1
    assert "(bad input): not retried" in out.stderr and "restart" not in out.stdout
    ips = tmp_path / "ips.txt"
    ips.write_text("1.2.3\n")
    cfg["launch"] = {"debug_local": 0, "ip_config": str(ips), "max_restarts": 3}
    cfg["data"]["part_dir"] = str(tmp_path / "parts2")
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", str(path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stderr.splitlines() == [
        f"error: launch.ip_config: {ips}:1: '1.2.3' is not an IPv4/IPv6 address"]
    assert not (tmp_path / "parts2").exists()


# ---------------------------------------------------------------------------- kill and resume
#: stage 3 long enough that a kill lands inside it (~0.05 s/step here), with a progress
#: checkpoint and a validation (which re-encodes the cache) every 10 steps
_KILL_RUN = {"max_steps": 150, "eval_every": 10}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    """The reference: the kill tests' config, run without a kill."""
    root = tmp_path_factory.mktemp("restart")
    cfg = tiny_config(root, tiny_tag_dir, tiny_bert_dir, output_dir=str(root / "ref"),
                      checkpoint_every=10)
    cfg["stage3"].update(_KILL_RUN)
    (root / "ref.yaml").write_text(yaml.safe_dump(cfg))
    ref = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
                          str(root / "ref.yaml")], capture_output=True, text=True, timeout=400)
    assert ref.returncode == 0, ref.stdout[-3000:] + ref.stderr[-3000:]
    return root, json.loads((root / "ref" / "results.json").read_text())


@pytest.mark.parametrize("victim", ["trainer", "server"])
def test_a_process_killed_at_a_random_step_of_stage3_ends_with_the_uninterrupted_numbers(
        uninterrupted, victim, tiny_tag_dir, tiny_bert_dir):
    """SIGKILL trainer 1 (or the DGL server of machine 1) at a random logged step of stage 3:
    the job restarts once, keeps the stages finished before the kill, resumes stage 3 after
    its last progress checkpoint and ends with the numbers of the uninterrupted run, bit for
    bit (runs are seeded; the restarted servers' cache is refilled by the validation that
    comes with every progress checkpoint)."""
    import random

    root, want = uninterrupted
    kill_at = random.Random().choice(range(11, 141, 10))  # a logged step: 1 + 10 k
    print(f"killing the {victim} at stage-3 step {kill_at}")  # shown when the test fails
    out_dir = root / f"run-{victim}"
    cfg = tiny_config(root, tiny_tag_dir, tiny_bert_dir, output_dir=str(out_dir),
                      resume=False, checkpoint_every=10)
    cfg["stage3"].update(_KILL_RUN)
    path = root / f"{victim}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose",
                             "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, killed, mtimes = [], [], {}
    timer = threading.Timer(400, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            lines.append(line)
            if not killed and f"[stage3] step {kill_at:4d}/150" in line:
                mtimes = {s: (out_dir / s / "metrics.json").stat().st_mtime_ns
                          for s in ("baseline", "stage1", "stage2")}
                role = "client" if victim == "trainer" else "server"
                victims = [p for p in own_processes(str(out_dir))
                           if p.environ().get("DGL_ROLE") == role
                           and (victim == "server" or p.environ().get("RANK") == "1")]
                victims = [p for p in victims if victim == "trainer"
                           or p.environ().get("DGL_SERVER_ID") == "1"]
                assert len(victims) == 1, [p.cmdline() for p in victims]
                victims[0].send_signal(signal.SIGKILL)
                killed.append(len(lines))
                # as if the kill had hit write_stage: a stale temp folder of a dead process
                (out_dir / ".stage3.tmp-999999").mkdir()
        rc = proc.wait()
    finally:
        timer.cancel()
    log = "".join(lines)
    assert rc == 0, log[-4000:]
    assert killed, "stage 3 never reached the step"
    # the launcher stops the job at the first failure it polls: the killed process (-9) or a
    # peer whose collective or connection broke (its own non-zero code) -- a race
    failures = re.findall(r"\[launcher\] (trainer-\d|server-\d\.\d) exited with code (-?\d+)",
                          log)
    assert len(failures) == 1, failures
    assert log.count(f"failed with exit code {failures[0][1]}; restart 1/2") == 1
    assert "restart 2/2" not in log
    assert "removed stale checkpoint temp folders of a killed run: .stage3.tmp-999999" in log
    rerun = "".join(lines[killed[0]:])
    rerun = rerun[rerun.index("restart 1/2"):]
    # finished stages were not run again; stage 3 continued after its last progress checkpoint
    assert "[stage1] step" not in rerun and "[baseline] epoch" not in rerun
    assert "[stage2] epoch" not in rerun
    assert f"[stage3] resuming after step {kill_at - 1} from its progress checkpoint" in rerun
    assert {s: (out_dir / s / "metrics.json").stat().st_mtime_ns for s in mtimes} == mtimes
    # no half-written checkpoint: every stage folder is complete, no temp folder is left
    # (beside logs/, configs/ and tb/: the processes' output, the resolved configs, TensorBoard)
    assert sorted(p.name for p in out_dir.iterdir() if p.is_dir()) == [
        "baseline", "configs", "logs", "stage1", "stage2", "stage3", "tb"]
    res = json.loads((out_dir / "results.json").read_text())
    assert res["restarts"] == 1 and want["restarts"] == 0
    assert res["config"]["resume"] is False and res["stages"]["stage3"]["steps"] == 150
    assert comparable(res["stages"]) == comparable(want["stages"])
    time.sleep(1)
    assert own_processes(str(out_dir)) == []


# ------------------------------------------------- exceptions are not retried, process deaths are
def test_exit_code_of_tells_lost_peers_from_exceptions():
    from lmgnn_dist.dist_init import exit_code_of

    lost = [ConnectionResetError("x"), TimeoutError("x"),
            RuntimeError("[gloo/transport/tcp/pair.cc:598] Connection closed by peer [127.0.0.2]:4")]
    assert [exit_code_of(e) for e in lost] == [1, 1, 1]
    bugs = [ValueError("boom"), KeyError("val_acc"), RuntimeError("mat1 and mat2 shapes cannot "
                                                                  "be multiplied (4x8 and 16x2)")]
    assert [exit_code_of(e) for e in bugs] == [3, 3, 3]
    assert run_with_restarts(lambda i: 3, max_restarts=5, what="job") == (3, 0)


def test_trainer_exception_stops_the_job_once_with_its_last_line(tmp_path):
    """A process that raises ends the job with code 3 and the launcher names its last line;
    when a process was killed by a signal, that death is what the job reports."""
    from launch.watch import JobWatch

    script = tmp_path / "boom.py"
    script.write_text("import os, time\nfrom lmgnn_dist.dist_init import run_and_exit\n"
                      "def main(argv):\n    if os.environ['DGL_ROLE'] == 'server':\n"
                      "        time.sleep(60)\n    raise ValueError('stage 3 found no target')\n"
                      "run_and_exit(main, [])\n")
    (tmp_path / "g.json").write_text(json.dumps({"num_parts": 1}))
    out = subprocess.run([sys.executable, "launch/run_dist.py", "--debug-local", "1",
                          "--workspace", str(tmp_path), "--part-config", str(tmp_path / "g.json"),
                          "--", sys.executable, str(script)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stdout[-2000:] + out.stderr[-2000:]
    assert ("[launcher] trainer-0 ended on: error: ValueError: stage 3 found no target"
            in out.stdout)
    peer_then_killed = [("trainer-0", False, 1), ("trainer-1", False, -9)]
    assert JobWatch().check(peer_then_killed).failed == "trainer-1"
