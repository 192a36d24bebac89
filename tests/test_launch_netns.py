"""launch/run_dist.py across real (network-namespace) hosts, over real ssh.

The test builds a small cluster on this kernel:

* a client namespace (the launcher runs there) with a bridge ``10.77.0.1/24``;
* two host namespaces, each with ``eth0`` on the bridge (``10.77.0.2``, ``10.77.0.3``), loopback
  up, and its own ``sshd`` (Debian ``openssh-server``) on port 22, started in its own mount
  namespace with a private tmpfs on ``/dev/shm``. DGL servers keep their partition in POSIX
  shared memory under names that do not depend on the machine, so without that the two
  "hosts" would overwrite each other's partition; with it they are as separate as real hosts
  (the filesystem, hence the Python and repo paths, is shared, as on a cluster with NFS);
* a throwaway client key and host key in a temp folder; ``sshd -f`` a temp config.

Every network name is suffixed with this process id and all addresses live inside the test's
own namespaces, so concurrent runs do not collide. Skips (never errors) where namespaces or
sshd cannot be had: not root, no ``ip``/``sshd``/``ssh``/``unshare``/``setsid``, or ``ip netns
add`` refused.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Set

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
LAUNCHER = str(REPO / "launch" / "run_dist.py")


def _sh(*argv: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(out.stderr or out.stdout).strip()}")
    return out


class NetnsCluster:
    """A client namespace plus ``n`` ssh-reachable host namespaces (see the module docstring)."""

    def __init__(self, root: Path, n: int = 2):
        self.root = root
        tag = str(os.getpid())
        self.client = f"lmgc{tag}"
        self.hosts = [f"lmgh{tag}x{i}" for i in range(n)]
        self.ips = [f"10.77.0.{i + 2}" for i in range(n)]
        self.sshd: List[subprocess.Popen] = []
        self.created: List[str] = []
        self.key = root / "client_key"

    # -- set-up / tear-down -------------------------------------------------------------
    def setup(self) -> None:
        """Raises RuntimeError naming the failing step."""
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / "host_key"))
        (self.root / "authorized_keys").write_text((self.root / "client_key.pub").read_text())
        for ns in [self.client] + self.hosts:
            _sh("ip", "netns", "add", ns)
            self.created.append(ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.client, "link", "add", "br0", "type", "bridge")
        _sh("ip", "-n", self.client, "addr", "add", "10.77.0.1/24", "dev", "br0")
        _sh("ip", "-n", self.client, "link", "set", "br0", "up")
        for i, (ns, ip) in enumerate(zip(self.hosts, self.ips)):
            _sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", f"vh{i}",
                "netns", self.client)
            _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", self.client, "link", "set", f"vh{i}", "master", "br0", "up")
            conf = self.root / f"sshd_{i}.conf"
            conf.write_text(
                f"Port 22\nListenAddress {ip}\nHostKey {self.root / 'host_key'}\n"
                f"PidFile {self.root / f'sshd_{i}.pid'}\n"
                f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
                "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nUseDNS no\n"
                "PrintMotd no\nLogLevel ERROR\nMaxStartups 100\nMaxSessions 100\n")
            log = open(self.root / f"sshd_{i}.log", "w")
            self.sshd.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
                 "sh", "-c", "mount -t tmpfs tmpfs /dev/shm && mkdir -p /run/sshd && "
                 f"exec {SSHD} -D -e -f {conf}"], stdout=log, stderr=subprocess.STDOUT))
        deadline = time.time() + 20
        for i in range(len(self.hosts)):
            while True:
                if self.ssh(i, "true", check=False).returncode == 0:
                    break
                if self.sshd[i].poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"sshd in {self.hosts[i]} did not come up: "
                                       + (self.root / f"sshd_{i}.log").read_text()[-500:])
                time.sleep(0.2)

    def teardown(self) -> None:
        for ns in self.created:
            for pid in self.pids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.sshd:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    # -- helpers --------------------------------------------------------------------------
    @property
    def ssh_opts(self) -> List[str]:
        return [f"IdentityFile={self.key}", "IdentitiesOnly=yes", "UserKnownHostsFile=/dev/null"]

    def ssh(self, i: int, command: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``command`` on host ``i`` over ssh from the client namespace."""
        argv = ["ip", "netns", "exec", self.client, "ssh", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5"]
        for o in self.ssh_opts:
            argv += ["-o", o]
        return _sh(*argv, f"root@{self.ips[i]}", command, check=check, timeout=60)

    def launcher_argv(self, ip_config: Path, part_config: Path, *extra: str) -> List[str]:
        """``launch/run_dist.py`` run inside the client namespace with this cluster's ssh key."""
        argv = ["ip", "netns", "exec", self.client, sys.executable, LAUNCHER,
                "--ip-config", str(ip_config), "--part-config", str(part_config),
                "--ssh-user", "root"]
        for o in self.ssh_opts:
            argv += ["--ssh-opt", o]
        return argv + list(extra)

    @staticmethod
    def pids(ns: str) -> Set[int]:
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        return {int(x) for x in out.stdout.split()}

    def job_pids(self, i: int) -> Set[int]:
        """Processes in host ``i`` other than its sshd listener."""
        return self.pids(self.hosts[i]) - {self.sshd[i].pid}

    def wait_hosts_empty(self, timeout: float = 15.0) -> List[Set[int]]:
        """Wait until no job process is left on any host; returns what is left then."""
        deadline = time.time() + timeout
        while True:
            left = [self.job_pids(i) for i in range(len(self.hosts))]
            if not any(left) or time.time() > deadline:
                return left
            time.sleep(0.2)


def _why_no_netns() -> Optional[str]:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    for tool in ("ip", "ssh", "ssh-keygen", "unshare", "setsid"):
        if shutil.which(tool) is None:
            return f"no '{tool}' command"
    if not os.access(SSHD, os.X_OK):
        return ("no sshd (Debian: apt-get install openssh-server; .ci/run installs it when it "
                "can)")
    return None


def _remove_stale_namespaces() -> None:
    """Delete namespaces left by an earlier run of this test that was killed (its pid is gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for ns in (line.split()[0] for line in out.splitlines() if line.strip()):
        m = re.fullmatch(r"lmg[ch](\d+)(x\d+)?", ns)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue  # its test run is still alive
        except ProcessLookupError:
            pass
        for pid in NetnsCluster.pids(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = _why_no_netns()
    if why:
        pytest.skip(f"netns multi-host test skipped: {why}")
    _remove_stale_namespaces()
    cl = NetnsCluster(tmp_path_factory.mktemp("netns"))
    try:
        cl.setup()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        cl.teardown()
        pytest.skip(f"netns multi-host test skipped: cannot build the test hosts: {exc}")
    yield cl
    cl.teardown()


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    out = tmp_path_factory.mktemp("netns_parts") / "parts"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "partition", "--tag", str(tiny_tag_dir),
                           "--out", str(out), "--num-parts", "2", "--max-seq-len", "16",
                           "--graph-name", "tiny", "--model", str(tiny_bert_dir)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def _ip_config(cluster: NetnsCluster, path: Path, port: int = 30050, extra: str = "") -> Path:
    path.write_text("".join(f"{ip} {port}\n" for ip in cluster.ips) + extra)
    return path


def _launch(argv: List[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_real_two_host_distdgl_job(cluster, tiny_parts, tiny_bert_dir, tmp_path):
    """Stage 2 of the tiny TAG as a 2-machine DistDGL job over ssh: both machines serve and
    train, the stage's results and checkpoint are written, nothing is left running."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = {
        "seed": 0, "output_dir": str(run_dir), "resume": False, "baseline": False,
        "stages": [2], "eval_batch_size": 16, "encode_batch_size": 16,
        "data": {"tag_path": "unused", "part_dir": str(tiny_parts), "graph_name": "tiny",
                 "num_parts": 2, "max_seq_len": 16},
        "model": {"lm": str(tiny_bert_dir), "hidden_size": 16, "fanouts": [4, 4], "dropout": 0.0},
        "stage2": {"epochs": 3, "batch_size": 8, "lr": 1e-2},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    ipc = _ip_config(cluster, tmp_path / "ips.txt")
    t0 = time.time()
    out = _launch(cluster.launcher_argv(
        ipc, tiny_parts / "tiny.json", "--workspace", str(run_dir),
        "--env", f"PYTHONPATH={REPO}", "--env", "HF_HUB_OFFLINE=1",
        "--", sys.executable, "-m", "lmgnn_dist.jobs.train", "--config", str(tmp_path / "run.yaml"),
        "launch.debug_local=0"), timeout=300)
    wall = time.time() - t0
    print(f"2-host job wall time {wall:.1f}s")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-6000:]
    # each DGL server saw the trainers of both machines connect, as two distinct machines
    assert "Machine (0) group (0)" in out.stdout and "Machine (1) group (0)" in out.stdout, log[-4000:]
    assert "[trainer-0] [trainer] 2 trainers on 2 machines" in out.stdout
    # gloo would pick the hostname's loopback address; the launcher named each host's interface
    assert all(f"[launcher] host {ip}: GLOO_SOCKET_IFNAME=eth0" in out.stdout for ip in cluster.ips)
    res = json.loads((run_dir / "stage2" / "metrics.json").read_text())  # the stage's results
    assert 0.0 <= res["test_acc"] <= 1.0 and len(res["losses"]) > 0
    assert (run_dir / "stage2" / "gnn.pt").exists()
    assert cluster.wait_hosts_empty() == [set(), set()]


def test_missing_path_on_one_host_is_named(cluster, tiny_parts, tmp_path):
    """A partition that exists here and in host 0's private /dev/shm but not on host 1: the
    pre-flight check names host 1 and the missing files, starts nothing, and exits 2."""
    shm = Path(f"/dev/shm/lmgnn-netns-{os.getpid()}")
    try:
        shutil.copytree(tiny_parts, shm / "parts")  # visible to the launcher (root /dev/shm)
        r = cluster.ssh(0, f"mkdir -p {shm} && cp -r {tiny_parts} {shm}/parts", check=False)
        assert r.returncode == 0, r.stderr
        ipc = _ip_config(cluster, tmp_path / "ips.txt")
        out = _launch(cluster.launcher_argv(ipc, shm / "parts" / "tiny.json", "--", "true"),
                      timeout=120)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1, out.stdout + out.stderr
    assert err[0].startswith("error: pre-flight check failed: host 10.77.0.3 lacks the partition "
                             f"config {shm}/parts/tiny.json, partition 1's files {shm}/parts/part1/{{")
    assert "10.77.0.2" not in err[0]  # host 0 has it all
    assert out.stdout == "" and cluster.wait_hosts_empty(2) == [set(), set()]


def test_unreachable_host_and_busy_port_are_named(cluster, tiny_parts, tmp_path):
    """A third machine with no host behind it, and a port already taken on host 1."""
    ipc = _ip_config(cluster, tmp_path / "ips.txt", port=30060, extra="10.77.0.9 30060\n")
    conf = json.loads((tiny_parts / "tiny.json").read_text())
    conf["num_parts"] = 3
    for i in range(2):  # the copy lives elsewhere: point at the real partition files
        conf[f"part-{i}"] = {k: str(tiny_parts / v) for k, v in conf[f"part-{i}"].items()}
    (tmp_path / "three.json").write_text(json.dumps(conf))
    holder = subprocess.Popen(
        ["ip", "netns", "exec", cluster.hosts[1], sys.executable, "-c",
         "import socket, sys, time; s = socket.socket(); s.bind(('10.77.0.3', 30060)); "
         "s.listen(); print('bound', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "bound"
        out = _launch(cluster.launcher_argv(ipc, tmp_path / "three.json",
                                            "--ssh-connect-timeout", "3", "--", "true"),
                      timeout=120)
    finally:
        holder.kill()
        holder.wait()
    err = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(err) == 1, out.stdout + out.stderr
    assert "port 30060 on host 10.77.0.3 is already in use" in err[0]
    assert ("ssh to host 10.77.0.9 failed (ssh -p 22 root@10.77.0.9): ssh: connect to host "
            "10.77.0.9 port 22: ") in err[0]
    assert "10.77.0.2" not in err[0]


_FAKE_JOB = """\
import os, signal, subprocess, sys, time
role, rank = os.environ["DGL_ROLE"], os.environ.get("RANK", "-")
# a grandchild in the same process group that ignores SIGTERM: only SIGKILL ends it
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
with open(os.environ["PIDFILE"], "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
print("up", role, rank, "note=" + repr(os.environ["NOTE"]), flush=True)
if role == "client" and rank == os.environ.get("FAIL_RANK"):
    time.sleep(2)
    print("failing", flush=True)
    sys.exit(3)
time.sleep(300)
"""

NOTE = "it's a \"quoted\" $HOME `x` value\twith tab"


def _fake_job(cluster, tmp_path, *extra_env):
    (tmp_path / "job.py").write_text(_FAKE_JOB)
    conf = tmp_path / "g.json"
    conf.write_text(json.dumps({"num_parts": 2}))
    pidfile = tmp_path / "pids"
    argv = cluster.launcher_argv(_ip_config(cluster, tmp_path / "ips.txt", port=30070), conf,
                                 "--env", f"PIDFILE={pidfile}", "--env", f"NOTE={NOTE}",
                                 *extra_env, "--", sys.executable, str(tmp_path / "job.py"))
    return argv, pidfile


def _assert_all_gone(cluster, pidfile):
    left = cluster.wait_hosts_empty()
    assert left == [set(), set()], f"processes left on the hosts: {left}"
    assert cluster.pids(cluster.client) == set()  # no ssh client left either
    pids = [int(x) for x in pidfile.read_text().split()]
    assert len(pids) == 8  # 2 servers + 2 trainers, each with a grandchild
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_failing_trainer_tears_down_both_hosts(cluster, tmp_path):
    """Trainer 1 (on host 1) exits 3: the launcher stops everything on both hosts, including
    grandchildren that ignore SIGTERM, and exits 3. The --env value arrives verbatim."""
    argv, pidfile = _fake_job(cluster, tmp_path, "--env", "FAIL_RANK=1")
    t0 = time.time()
    out = _launch(argv, timeout=120)
    took = time.time() - t0
    assert out.returncode == 3, out.stdout + out.stderr
    assert "[trainer-1] failing" in out.stdout
    assert "[launcher] trainer-1 exited with code 3; stopping the others" in out.stdout
    assert f"[server-0.0] up server - note={NOTE!r}" in out.stdout
    assert f"[trainer-1] up client 1 note={NOTE!r}" in out.stdout
    _assert_all_gone(cluster, pidfile)
    assert took < 60


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
def test_signal_tears_down_both_hosts(cluster, tmp_path, sig):
    """Ctrl-C (SIGINT to the launcher) once all four processes run: exit 130, nothing left.
    Even a SIGKILLed launcher, which cannot clean up, leaves nothing: its ssh clients' stdin
    pipes close, and the remote wrappers stop their process groups."""
    argv, pidfile = _fake_job(cluster, tmp_path)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.time() + 60
        while sum(line.split("] ", 1)[-1].startswith("up ") for line in seen) < 4:
            assert time.time() < deadline and proc.poll() is None, "".join(seen)
            seen.append(proc.stdout.readline())
        t0 = time.time()
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        took = time.time() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, "".join(seen) + rest
        assert "[launcher] signal 2: stopping all processes" in rest
    else:
        assert proc.returncode == -signal.SIGKILL
    _assert_all_gone(cluster, pidfile)
    assert took < 30
