"""launch/run_dist.py: ip-config parsing, clear errors, and teardown when a process fails."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time

import pytest

from launch.hosts import (Host, LaunchError, check_partition_matches, free_port, read_ip_config,
                          write_debug_ip_config)
from launch.run_dist import main

_REAL_RUN = subprocess.run  # tests below monkeypatch subprocess.run (the launcher's ssh calls)


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

    monkeypatch.setattr(shutil, "which", lambda name: None)
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

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ssh")
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(threading.Thread, "start", lambda self: None)
    launcher = rd.Launcher([Host("10.0.0.1", 30050), Host("10.0.0.2", 30050)],
                           str(tmp_path / "g.json"), ["python", "-m", "x"], ssh_port=2222,
                           ssh_user="me", ip_config=str(tmp_path / "ips.txt"))
    launcher.start()
    assert len(seen) == 4  # 2 servers + 2 trainers
    for cmd in seen:
        assert cmd[0] == "ssh" and cmd[cmd.index("-p") + 1] == "2222"
        opts = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-o"]
        assert "BatchMode=yes" in opts and any(o.startswith("ConnectTimeout=") for o in opts)
    server0, trainer1 = seen[0], seen[3]
    assert server0[-2] == "me@10.0.0.1" and "DGL_ROLE=server" in server0[-1]
    assert trainer1[-2] == "me@10.0.0.2" and "RANK=1" in trainer1[-1]
    assert "MASTER_ADDR=10.0.0.1" in trainer1[-1]
    assert "LMGNN_MACHINE_IP" not in trainer1[-1]  # real hosts are not isolated
    assert trainer1[-1].endswith("lmgnn-remote python -m x")


# --- remote hosts: pre-flight check, env quoting, remote teardown -------------------------

def _two_remote(tmp_path, extra_conf=None):
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 2, **(extra_conf or {})}))
    return _ipc(tmp_path, "10.0.0.1 30050\n10.0.0.2 30050\n"), str(conf)


def _fake_ssh(monkeypatch, behave):
    """Replace the launcher's ``subprocess.run`` (only ssh goes through it): ``behave(host,
    remote command)`` returns a CompletedProcess; records every call. Nothing may start."""
    import launch.run_dist as rd

    calls = []

    def run(argv, **kw):
        assert argv[0] == "ssh" and kw.get("timeout") and kw.get("stdin") == subprocess.DEVNULL
        calls.append(argv)
        return behave(argv[-2], argv[-1])

    def no_start(self):
        raise AssertionError("processes were started despite a failed pre-flight check")

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ssh")
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(rd.Launcher, "start", no_start)
    return calls


def _run_here(script, hide=()):
    """Run a pre-flight script with this machine's sh, as a host whose filesystem lacks
    ``hide`` (a ``test`` function that fails for those paths shadows the builtin)."""
    shadow = "test() { case \"$2\" in " + "".join(f"{shlex.quote(h)}) return 1;; " for h in hide) \
        + "esac; [ \"$@\" ]; }\n" if hide else ""
    return _REAL_RUN(["sh", "-c", shadow + script], capture_output=True, text=True)


def test_preflight_names_unreachable_host_and_missing_paths_in_one_line(tmp_path, monkeypatch, capsys):
    """Host 1 refuses ssh, host 2 lacks the partition config and part1's file and has no such
    address: one error line naming each host, exit code 2, one ssh call per host, nothing started."""
    ipc, conf = _two_remote(tmp_path, {"part-1": {"part_graph": "part1/graph.dgl",
                                                  "node_feats": "part1/nf.dgl"}})

    def behave(host, remote):
        if host.endswith("10.0.0.1"):
            return subprocess.CompletedProcess([], 255, "", "Warning: x\nssh: connect to host "
                                               "10.0.0.1 port 2222: Connection refused\n")
        script = shlex.split(remote)[-1]  # "exec sh -c SCRIPT"
        return _run_here(script, hide=[conf] + [str(tmp_path / "part1" / f)
                                                for f in ("graph.dgl", "nf.dgl")])

    calls = _fake_ssh(monkeypatch, behave)
    rc = main(["--ip-config", ipc, "--part-config", conf, "--ssh-port", "2222", "--ssh-user", "me",
               "--", "true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert len(calls) == 2 and {c[-2] for c in calls} == {"me@10.0.0.1", "me@10.0.0.2"}
    assert err[0].startswith("error: pre-flight check failed: ssh to host 10.0.0.1 failed "
                             "(ssh -p 2222 me@10.0.0.1): ssh: connect to host 10.0.0.1 port "
                             "2222: Connection refused; ")
    assert (f"host 10.0.0.2 lacks the partition config {conf}, partition 1's files "
            f"{tmp_path / 'part1'}/{{graph.dgl, nf.dgl}};") in err[0]
    # the real port check ran here, where 10.0.0.2 is no local address
    assert "host 10.0.0.2 has no interface with address 10.0.0.2 (cannot bind port 30050)" in err[0]
    assert err[0].endswith("(nothing is copied: every host needs the same paths)")
    assert "the working directory" not in err[0] and f"the ip-config {ipc}" not in err[0]  # exist


def test_preflight_checks_every_needed_path(tmp_path):
    from launch.remote import remote_required_paths

    (tmp_path / "run.yaml").write_text("x: 1\n")
    conf = tmp_path / "parts" / "g.json"
    conf.parent.mkdir()
    conf.write_text(json.dumps({"num_parts": 2, "part-0": {"part_graph": "part0/graph.dgl"},
                                "part-1": {"node_feats": "part1/nf.dgl", "part_graph": "/abs/p1.dgl"}}))
    got = remote_required_paths(1, "parts/g.json", "ips.txt", "ws", [".venv/bin/python", "-m",
                                "lmgnn_dist.jobs.train", "--config", "run.yaml", "stage2.epochs=3"],
                                str(tmp_path))
    assert got == [("the working directory", str(tmp_path)),
                   ("the partition config", str(conf)),
                   ("partition 1's file", str(tmp_path / "parts" / "part1" / "nf.dgl")),
                   ("partition 1's file", "/abs/p1.dgl"),
                   ("the ip-config", str(tmp_path / "ips.txt")),
                   ("the workspace", str(tmp_path / "ws")),
                   ("the program", str(tmp_path / ".venv" / "bin" / "python")),
                   ("the command argument", str(tmp_path / "run.yaml"))]


def test_preflight_reports_busy_port_and_finds_interface(tmp_path, monkeypatch):
    """The real check script, run here as the 'remote' shell: a listening port is reported
    with host and port; a free one is not; the interface holding the address is found."""
    import socket

    from launch.remote import check_remote_host

    monkeypatch.setattr(subprocess, "run", lambda argv, **kw: _run_here(shlex.split(argv[-1])[-1]))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        free = free_port()
        c = check_remote_host(Host("127.0.0.1", port), [("the workspace", str(tmp_path))],
                              [port, free], ["python3", sys.executable])
    assert c.problems == [f"port {port} on host 127.0.0.1 is already in use"]
    assert c.ifname == "lo" and c.warnings == []
    c = check_remote_host(Host("127.0.0.1", port), [], [free], ["no-such-python"])
    assert c.problems == [] and c.warnings == [f"host 127.0.0.1 has no python3 on its PATH: "
                                               f"ports {free} not checked"]


@pytest.mark.parametrize("result,message", [
    (subprocess.TimeoutExpired("ssh", 23), "host 10.0.0.9 did not answer over ssh (ssh -p 22 "
                                           "10.0.0.9) within 23s"),
    (subprocess.CompletedProcess([], 255, "", "root@10.0.0.9: Permission denied (publickey).\n"),
     "ssh to host 10.0.0.9 failed (ssh -p 22 10.0.0.9): root@10.0.0.9: Permission denied "
     "(publickey)."),
    (subprocess.CompletedProcess([], 127, "", "fish: Unknown command: exec\n"),
     "host 10.0.0.9: the check did not run over ssh (ssh -p 22 10.0.0.9): fish: Unknown "
     "command: exec (the login shell must run POSIX sh commands)"),
])
def test_preflight_ssh_failures(monkeypatch, result, message):
    from launch.remote import check_remote_host

    def run(argv, **kw):
        assert "ConnectTimeout=3" in argv and kw["timeout"] == 23
        if isinstance(result, Exception):
            raise result
        return result

    monkeypatch.setattr(subprocess, "run", run)
    c = check_remote_host(Host("10.0.0.9", 30050), [], [30050], ["python3"], connect_timeout=3)
    assert c.problems == [message]


TRICKY = {"SPACES": "a b  c", "QUOTES": "it's \"quoted\"", "SHELL_META": "$HOME `id` $(id) \\ ; | & *",
          "TAB_NL": "tab\there\nnext line", "EMPTY": "", "UNICODE": "héllo ☃"}


@pytest.mark.parametrize("login_shell", ["sh", "bash"])
def test_env_values_survive_the_remote_shell(tmp_path, login_shell):
    """sshd runs the remote command as ``$SHELL -c STRING``: every value arrives verbatim, the
    command runs in the given directory with its arguments intact."""
    from launch.remote import remote_command

    if shutil.which(login_shell) is None:
        pytest.skip(f"no {login_shell}")
    code = ("import json, os, sys; print(json.dumps([os.getcwd(), sys.argv[1:], "
            "{k: os.environ[k] for k in %r}]))" % sorted(TRICKY))
    cmd = remote_command(str(tmp_path), TRICKY, [sys.executable, "-c", code, "arg with space", "'"])
    # stdin stays open as an ssh channel's would (its end makes the wrapper stop the command)
    proc = subprocess.Popen([login_shell, "-c", cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout = proc.stdout.read()
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.stdin.close()
        proc.kill()
    cwd, argv, env = json.loads(stdout)
    assert cwd == str(tmp_path) and argv == ["arg with space", "'"] and env == TRICKY


def test_env_keys_and_values_from_cli(tmp_path, capsys, monkeypatch):
    ipc, conf = _two_remote(tmp_path)
    for bad in ["NO_EQUALS", "BAD KEY=1", "1X=2", "A;rm=3"]:
        rc = main(["--ip-config", ipc, "--part-config", conf, "--env", bad, "--", "true"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--env" in err[0], (bad, err)
    # a value with '=' and spaces is kept whole and reaches the remote command string
    import launch.run_dist as rd

    seen = []

    class FakePopen:
        def __init__(self, cmd, **kw):
            seen.append(cmd)
            self.stdout, self.stdin, self.pid = None, None, 0

    import launch.api

    monkeypatch.setattr(launch.api, "preflight_remote", lambda *a, **kw: {})
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/ssh")
    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    monkeypatch.setattr(threading.Thread, "start", lambda self: None)
    monkeypatch.setattr(rd.Launcher, "wait", lambda self: 0)
    assert main(["--ip-config", ipc, "--part-config", conf, "--env", "OPTS=a=b c", "--", "true"]) == 0
    assert len(seen) == 4
    for c in seen:
        words = shlex.split(c[-1])  # exec sh -c SCRIPT lmgnn-remote true
        assert words[:3] == ["exec", "sh", "-c"] and words[4:] == ["lmgnn-remote", "true"]
        assert "\nexport " in words[3] and " OPTS='a=b c'" in words[3]


def _wrapped(tmp_path, body, grace=1):
    """Start ``body`` (python) under the remote wrapper, as sshd would, with a stdin pipe."""
    from launch.remote import remote_command

    pidfile = tmp_path / "pids"
    code = ("import os, signal, subprocess, sys, time\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
            f"open({str(pidfile)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}')\n" + body)
    cmd = remote_command(str(tmp_path), {}, [sys.executable, "-c", code], grace_s=grace)
    proc = subprocess.Popen(["sh", "-c", cmd], stdin=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 20
    while not (pidfile.exists() and len(pidfile.read_text().split()) == 2):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc, [int(x) for x in pidfile.read_text().split()]


def _gone(pids, timeout=5.0):
    deadline = time.time() + timeout
    while True:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            return True
        if time.time() >= deadline:
            break
        time.sleep(0.05)
    for pid in alive:  # do not leave them behind if the test fails
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return False


def test_remote_wrapper_kills_its_group_when_stdin_closes(tmp_path):
    """Closing the ssh channel's stdin (what stop() does, or what happens when the launcher
    or its ssh client dies) ends the command and a grandchild that ignores SIGTERM."""
    proc, pids = _wrapped(tmp_path, "time.sleep(300)\n")
    try:
        t0 = time.time()
        proc.stdin.close()
        assert proc.wait(10) == 128 + 15  # the command died of SIGTERM
        assert _gone(pids), "remote processes survived"
        assert time.time() - t0 < 5  # SIGKILL of the grandchild 1 s after the command died
    finally:
        _gone(pids, timeout=0)


def test_remote_wrapper_returns_exit_code_and_cleans_up(tmp_path):
    """The command exits 3 by itself: ssh's exit code is 3 and its leftover child is killed."""
    proc, pids = _wrapped(tmp_path, "time.sleep(0.5); sys.exit(3)\n")
    try:
        assert proc.wait(15) == 3
        assert _gone(pids)
    finally:
        proc.stdin.close()
        _gone(pids, timeout=0)


@pytest.mark.parametrize("case, message", [
    ("debug-local-0", "error: --debug-local needs 1..254 machines, got 0"),
    ("ip-config-folder", "ips: ip-config is a folder, expected a file"),
    ("ip-config-binary", "bin.txt: cannot read the ip-config"),
    ("part-config-truncated", "g.json: partition config is not valid JSON"),
    ("part-config-folder", "parts: partition config is a folder, expected a file"),
    ("part-config-list", "g.json: not a DGL partition config (no integer 'num_parts')"),
])
def test_bad_launcher_files_give_one_line_and_start_nothing(tmp_path, capsys, case, message):
    (tmp_path / "ips").mkdir()
    (tmp_path / "parts").mkdir()
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe127.0.0.1")
    conf = tmp_path / "g.json"
    conf.write_text({"part-config-truncated": '{"num_parts": 2',
                     "part-config-list": "[2]"}.get(case, '{"num_parts": 1}'))
    where = {"debug-local-0": ["--debug-local", "0"],
             "ip-config-folder": ["--ip-config", str(tmp_path / "ips")],
             "ip-config-binary": ["--ip-config", str(tmp_path / "bin.txt")]}.get(
        case, ["--debug-local", "1"])
    part = str(tmp_path / "parts") if case == "part-config-folder" else str(conf)
    rc = main([*where, "--part-config", part, "--workspace", str(tmp_path), "--", "true"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0], err


def test_procs_still_exports_the_names_that_moved_out():
    """launch/procs.py was split (output, watch, memory); the old import path still works."""
    import importlib

    import launch.procs

    moved = {"launch.output": ["CONSOLE_MARK", "BAR_MARK", "BAR_EVERY_S", "ProcessOutput"],
             "launch.watch": ["NO_RETRY_EXIT_CODES", "EXCEPTION_EXIT_CODE", "NO_RETRY_REASONS",
                              "Outcome", "JobWatch", "run_with_restarts"],
             "launch.memory": ["TreeMemoryMonitor"]}
    for home, names in moved.items():
        mod = importlib.import_module(home)
        for name in names:
            assert getattr(launch.procs, name) is getattr(mod, name), (home, name)
            assert name in launch.procs.__all__
