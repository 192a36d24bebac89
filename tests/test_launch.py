"""launch/run_dist.py: ip-config parsing, clear errors, and teardown when a process fails."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from launch.run_dist import (Host, LaunchError, check_partition_matches, main, read_ip_config,
                             write_debug_ip_config)


def _ipc(tmp_path, text):
    p = tmp_path / "ips.txt"
    p.write_text(text)
    return str(p)


def test_read_ip_config(tmp_path):
    hosts = read_ip_config(_ipc(tmp_path, "# cluster\n10.0.0.1 30050\n\n10.0.0.2 30060  # two\n"))
    assert hosts == [Host("10.0.0.1", 30050), Host("10.0.0.2", 30060)]
    assert not hosts[0].is_local and Host("127.0.0.2", 1).is_local
    local = read_ip_config(_ipc(tmp_path, "127.0.0.1\n"))
    assert local[0].ip == "127.0.0.1" and 0 < local[0].port < 65536  # a free port was chosen


@pytest.mark.parametrize("text,message", [
    ("10.0.0.1 30050 extra\n", r"ips.txt:1: expected 'IP \[PORT\]'"),
    ("not-an-ip\n", r"ips.txt:1: 'not-an-ip' is not an IPv4/IPv6 address"),
    ("10.0.0.1 http\n", r"ips.txt:1: bad port 'http'"),
    ("10.0.0.1 1\n10.0.0.1 2\n", r"ips.txt:2: IP 10.0.0.1 already used on line 1"),
    ("# nothing\n", r"lists no machine"),
])
def test_ip_config_errors(tmp_path, text, message):
    with pytest.raises(LaunchError, match=message):
        read_ip_config(_ipc(tmp_path, text))


def test_partition_must_match_machines(tmp_path):
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 2}))
    hosts = write_debug_ip_config(str(tmp_path / "ips.txt"), 2)
    assert [h.ip for h in hosts] == ["127.0.0.1", "127.0.0.2"]
    check_partition_matches(str(conf), hosts)
    with pytest.raises(LaunchError, match="has 2 partitions but the ip-config lists 3 machines"):
        check_partition_matches(str(conf), write_debug_ip_config(str(tmp_path / "i3.txt"), 3))
    with pytest.raises(LaunchError, match="partition config not found"):
        check_partition_matches(str(tmp_path / "nope.json"), hosts)


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    rc = main(["--ip-config", _ipc(tmp_path, "1.2.3\n"), "--part-config", "x.json", "--", "true"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an IPv4/IPv6 address" in err[0]


def test_failing_trainer_stops_everything(tmp_path):
    """A trainer exiting 3 makes the launcher stop the servers and return 3, leaving no process."""
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 2}))
    pidfile = tmp_path / "pids"
    script = tmp_path / "proc.py"
    script.write_text(
        "import os, sys, time\n"
        f"open({str(pidfile)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "if os.environ['DGL_ROLE'] == 'client' and os.environ['RANK'] == '1':\n"
        "    time.sleep(1); print('trainer 1 fails'); sys.exit(3)\n"
        "print('role', os.environ['DGL_ROLE'], 'machine', os.environ['LMGNN_MACHINE_ID'], flush=True)\n"
        "time.sleep(60)\n")
    t0 = time.time()
    out = subprocess.run([sys.executable, "launch/run_dist.py", "--debug-local", "2",
                          "--workspace", str(tmp_path), "--part-config", str(conf), "--",
                          sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3, out.stdout + out.stderr
    assert time.time() - t0 < 30
    assert "[trainer-1] trainer 1 fails" in out.stdout
    assert "[launcher] trainer-1 exited with code 3; stopping the others" in out.stdout
    assert "[server-1.0] role server machine 1" in out.stdout
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 4  # 2 servers + 2 trainers
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_remote_host_without_ssh_says_so(tmp_path, monkeypatch):
    import launch.run_dist as rd

    monkeypatch.setattr(rd.shutil, "which", lambda name: None)
    launcher = rd.Launcher([Host("10.9.9.9", 30050)], str(tmp_path / "g.json"), ["true"],
                           ip_config=str(tmp_path / "ips.txt"))
    with pytest.raises(LaunchError, match="host 10.9.9.9 is remote but no 'ssh' client"):
        launcher.start()


def test_remote_command_is_built_for_ssh(tmp_path, monkeypatch):
    import launch.run_dist as rd

    seen = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen.append(cmd)
            self.stdout, self.pid = None, 0

        def poll(self):
            return 0

    monkeypatch.setattr(rd.shutil, "which", lambda name: "/usr/bin/ssh")
    monkeypatch.setattr(rd.subprocess, "Popen", FakePopen)
    monkeypatch.setattr(rd.threading.Thread, "start", lambda self: None)
    launcher = rd.Launcher([Host("10.0.0.1", 30050), Host("10.0.0.2", 30050)],
                           str(tmp_path / "g.json"), ["python", "-m", "x"], ssh_port=2222,
                           ssh_user="me", ip_config=str(tmp_path / "ips.txt"))
    launcher.start()
    assert len(seen) == 4  # 2 servers + 2 trainers
    for cmd in seen:
        assert cmd[:7] == ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes", "-p", "2222"]
    server0, trainer1 = seen[0], seen[3]
    assert server0[7] == "me@10.0.0.1" and "DGL_ROLE=server" in server0[8]
    assert trainer1[7] == "me@10.0.0.2" and "RANK=1" in trainer1[8] and "MASTER_ADDR=10.0.0.1" in trainer1[8]
    assert "LMGNN_MACHINE_IP" not in trainer1[8]  # real hosts are not isolated
    assert trainer1[8].endswith("python -m x")
