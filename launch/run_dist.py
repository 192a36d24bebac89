"""Start DGL servers and trainer processes on every host of an ip-config.

Usage::

    # a real cluster: one "IP [PORT]" line per machine, passwordless ssh to each
    python launch/run_dist.py --ip-config ips.txt --part-config parts/cora.json \\
        --num-trainers 1 -- python -m lmgnn_dist.train --config run.yaml

    # single-machine debug mode: N loopback "machines" 127.0.0.1 .. 127.0.0.N
    python launch/run_dist.py --debug-local 2 --part-config parts/cora.json -- python ...

For each machine ``m`` (line ``m`` of the ip-config, which must match partition ``m``) the
launcher starts ``--num-servers`` DGL servers (``DGL_ROLE=server``) and ``--num-trainers``
trainers (``DGL_ROLE=client`` plus the ``torch.distributed`` env: ``MASTER_ADDR`` = first
machine, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), the same environment contract as DGL's own
``tools/launch.py``. Loopback hosts are started as local subprocesses; any other host over
``ssh`` (``--ssh-port``, ``--ssh-user``). Each process's output is streamed with a
``[server-m.s]``/``[trainer-r]`` prefix. If any process fails, the others are stopped (their
whole process groups) and the launcher exits with that process's code; Ctrl-C does the same.
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence


class LaunchError(RuntimeError):
    """A launch cannot start: bad ip-config, mismatched partitions, missing tools."""


@dataclass
class Host:
    ip: str
    port: int

    @property
    def is_local(self) -> bool:
        try:
            return ipaddress.ip_address(self.ip).is_loopback
        except ValueError:
            return self.ip == "localhost"


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``ip`` right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def read_ip_config(path: str, num_servers: int = 1) -> List[Host]:
    """Parse an ip-config: one ``IP [PORT]`` per machine; blank lines and ``#`` comments skipped.

    A machine without a port gets a free one (``num_servers`` consecutive ports are used from it).

    Raises
    ------
    LaunchError naming the file and line for a malformed line, a bad IP or port, or a
    duplicate IP (DGL identifies machines by IP: on one host use 127.0.0.1, 127.0.0.2, ...).
    """
    if not os.path.exists(path):
        raise LaunchError(f"{path}: ip-config not found")
    hosts: List[Host] = []
    seen: Dict[str, int] = {}
    for lineno, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise LaunchError(f"{path}:{lineno}: expected 'IP [PORT]', got {raw!r}")
        ip = parts[0]
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise LaunchError(f"{path}:{lineno}: {ip!r} is not an IPv4/IPv6 address") from None
        if ip in seen:
            raise LaunchError(
                f"{path}:{lineno}: IP {ip} already used on line {seen[ip]}; each machine needs "
                "its own IP (on one host use 127.0.0.1, 127.0.0.2, ...)")
        seen[ip] = lineno
        if len(parts) == 2:
            if not parts[1].isdigit() or not 0 < int(parts[1]) < 65536 - num_servers:
                raise LaunchError(f"{path}:{lineno}: bad port {parts[1]!r}")
            port = int(parts[1])
        else:
            port = free_port(ip) if Host(ip, 0).is_local else 30050
        hosts.append(Host(ip, port))
    if not hosts:
        raise LaunchError(f"{path}: ip-config lists no machine")
    return hosts


def write_debug_ip_config(path: str, num_machines: int) -> List[Host]:
    """Write an ip-config of ``num_machines`` loopback machines 127.0.0.1..N with free ports."""
    if not 1 <= num_machines <= 254:
        raise LaunchError(f"--debug-local needs 1..254 machines, got {num_machines}")
    hosts = [Host(f"127.0.0.{i + 1}", 0) for i in range(num_machines)]
    for h in hosts:
        h.port = free_port(h.ip)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{h.ip} {h.port}\n" for h in hosts))
    return hosts


def check_port_free(host: Host, num_servers: int) -> None:
    """Raise LaunchError if a local server port is already taken."""
    if not host.is_local:
        return
    for p in range(host.port, host.port + num_servers):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host.ip, p))
            except OSError:
                raise LaunchError(f"port {p} on {host.ip} is already in use") from None


@dataclass
class ProcSpec:
    """One process of a job: its name (``server-m.s``/``trainer-r``), machine and environment.

    ``env`` is what the process needs on top of the inherited environment (the launcher
    contract); ``machine`` indexes the job's host list (= partition id).
    """

    name: str
    machine: int
    env: Dict[str, str]
    is_server: bool


def process_specs(hosts: Sequence[Host], part_config: str, ip_config: str, num_trainers: int = 1,
                  num_servers: int = 1, num_samplers: int = 0, omp_threads: int = 1,
                  extra_env: Optional[Dict[str, str]] = None, graph_format: str = "csc",
                  job_id: str = "", master_port: Optional[int] = None) -> List[ProcSpec]:
    """The environment contract of every process of a job, servers first (pure: starts nothing).

    For each machine ``m`` (``hosts[m]``, serving partition ``m``): ``num_servers`` DGL servers
    (``DGL_ROLE=server``, ``DGL_SERVER_ID``) and ``num_trainers`` trainers (``DGL_ROLE=client``
    and the ``torch.distributed`` env: ``MASTER_ADDR`` = ``hosts[0]``, ``MASTER_PORT``,
    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), plus the ``DGL_*`` variables every process reads.
    A process on a loopback host also gets ``LMGNN_MACHINE_IP``/``LMGNN_MACHINE_ID``/
    ``LMGNN_JOB_ID`` (see :mod:`lmgnn_dist.dist_init`). ``master_port`` defaults to a free
    port on a loopback master and 29500 otherwise. Used by :class:`Launcher` and by the Ray
    actors of :mod:`lmgnn_dist.ray_pipeline`.
    """
    base = {
        "DGL_IP_CONFIG": os.path.abspath(ip_config),
        "DGL_CONF_PATH": os.path.abspath(part_config),
        "DGL_NUM_SERVER": str(num_servers),
        "DGL_NUM_CLIENT": str(num_trainers * (1 + num_samplers) * len(hosts)),
        "DGL_NUM_SAMPLER": str(num_samplers),
        "DGL_GRAPH_FORMAT": graph_format,
        "DGL_DIST_MODE": "distributed",
        "DGL_KEEP_ALIVE": "0",
        "OMP_NUM_THREADS": str(omp_threads),
        "PYTHONUNBUFFERED": "1",
    }
    base.update(extra_env or {})

    def machine_env(m: int) -> Dict[str, str]:
        if not hosts[m].is_local:
            return dict(base)
        return dict(base, LMGNN_MACHINE_IP=hosts[m].ip, LMGNN_MACHINE_ID=str(m),
                    LMGNN_JOB_ID=job_id)

    specs: List[ProcSpec] = []
    for m in range(len(hosts)):
        for s in range(num_servers):
            env = dict(machine_env(m), DGL_ROLE="server", DGL_SERVER_ID=str(m * num_servers + s))
            specs.append(ProcSpec(f"server-{m}.{s}", m, env, True))
    master = hosts[0]
    if master_port is None:
        master_port = free_port(master.ip) if master.is_local else 29500
    world = num_trainers * len(hosts)
    for m in range(len(hosts)):
        for t in range(num_trainers):
            rank = m * num_trainers + t
            env = dict(machine_env(m), DGL_ROLE="client", DGL_GROUP_ID="0",
                       MASTER_ADDR=master.ip, MASTER_PORT=str(master_port), RANK=str(rank),
                       WORLD_SIZE=str(world), LOCAL_RANK=str(t))
            specs.append(ProcSpec(f"trainer-{rank}", m, env, False))
    return specs


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    is_server: bool
    thread: Optional[threading.Thread] = None


@dataclass
class Launcher:
    """Starts, streams and supervises the processes of one distributed job."""

    hosts: List[Host]
    part_config: str
    command: List[str]
    num_trainers: int = 1
    num_servers: int = 1
    num_samplers: int = 0
    omp_threads: int = 1
    ssh_port: int = 22
    ssh_user: str = ""
    extra_env: Dict[str, str] = field(default_factory=dict)
    graph_format: str = "csc"
    ip_config: str = ""
    server_grace_s: float = 60.0
    procs: List[Proc] = field(default_factory=list)
    job_id: str = field(default_factory=lambda: os.urandom(4).hex())
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _spawn(self, name: str, host: Host, env: Dict[str, str], is_server: bool) -> None:
        if host.is_local:
            # several machines share this host: see lmgnn_dist.dist_init (shared-memory isolation)
            env = dict(env, LMGNN_MACHINE_IP=host.ip, LMGNN_JOB_ID=self.job_id,
                       LMGNN_MACHINE_ID=str(self.hosts.index(host)))
            full_env = dict(os.environ)
            full_env.update(env)
            popen = subprocess.Popen(self.command, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        else:
            if shutil.which("ssh") is None:
                raise LaunchError(
                    f"host {host.ip} is remote but no 'ssh' client is installed here; "
                    "install openssh-client or run on loopback hosts")
            exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
            remote = f"cd {shlex.quote(os.getcwd())} && export {exports} && " + " ".join(
                shlex.quote(c) for c in self.command)
            target = f"{self.ssh_user}@{host.ip}" if self.ssh_user else host.ip
            popen = subprocess.Popen(
                ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes",
                 "-p", str(self.ssh_port), target, remote],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        proc = Proc(name, popen, is_server)
        proc.thread = threading.Thread(target=self._stream, args=(proc,), daemon=True)
        proc.thread.start()
        self.procs.append(proc)

    def _stream(self, proc: Proc) -> None:
        assert proc.popen.stdout is not None
        # universal newlines: a progress bar's '\r' refreshes become lines of their own
        text = io.TextIOWrapper(proc.popen.stdout, encoding="utf-8", errors="replace", newline=None)
        for line in text:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            with self._lock:
                print(f"[{proc.name}] {line}", flush=True)

    def start(self) -> None:
        for spec in self.process_specs():
            self._spawn(spec.name, self.hosts[spec.machine], spec.env, spec.is_server)

    def process_specs(self, master_port: Optional[int] = None) -> List["ProcSpec"]:
        """This job's processes as :func:`process_specs` describes them."""
        return process_specs(self.hosts, self.part_config, self.ip_config, self.num_trainers,
                             self.num_servers, self.num_samplers, self.omp_threads,
                             self.extra_env, self.graph_format, self.job_id, master_port)

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> None:
        """Stop every process that is still running (its whole group), SIGKILL after ``wait_s``."""
        for p in self.procs:
            if p.popen.poll() is None:
                try:
                    os.killpg(p.popen.pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.time() + wait_s
        for p in self.procs:
            try:
                p.popen.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.popen.wait()

    def wait(self) -> int:
        """Supervise until all trainers end; returns 0 or the first failing exit code."""
        trainers = [p for p in self.procs if not p.is_server]
        servers_done_by: Optional[float] = None
        while True:
            for p in self.procs:
                rc = p.popen.poll()
                if rc not in (None, 0):
                    with self._lock:
                        print(f"[launcher] {p.name} exited with code {rc}; stopping the others",
                              flush=True)
                    self.stop()
                    self._join_streams()
                    return rc
            if all(p.popen.poll() == 0 for p in trainers):
                # DGL servers exit by themselves once every client has finished.
                servers_done_by = servers_done_by or time.time() + self.server_grace_s
                if all(p.popen.poll() is not None for p in self.procs):
                    self._join_streams()
                    return 0
                if time.time() > servers_done_by:
                    with self._lock:
                        print("[launcher] servers did not exit after the trainers; stopping them",
                              flush=True)
                    self.stop()
                    self._join_streams()
                    return 0
            time.sleep(0.2)

    def _join_streams(self) -> None:
        for p in self.procs:
            if p.thread is not None:
                p.thread.join(timeout=5)


def check_partition_matches(part_config: str, hosts: Sequence[Host]) -> dict:
    """The partition config must exist and have one partition per machine.

    Raises
    ------
    LaunchError naming the file and both numbers.
    """
    if not os.path.exists(part_config):
        raise LaunchError(f"{part_config}: partition config not found (run `python -m partition`)")
    meta = json.loads(Path(part_config).read_text())
    if meta.get("num_parts") != len(hosts):
        raise LaunchError(
            f"{part_config} has {meta.get('num_parts')} partitions but the ip-config lists "
            f"{len(hosts)} machines; they must be equal")
    return meta


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Launch DGL servers + trainers on the machines of an ip-config.",
        usage="%(prog)s (--ip-config FILE | --debug-local N) --part-config JSON [options] -- CMD ...")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--ip-config", help="one 'IP [PORT]' line per machine")
    where.add_argument("--debug-local", type=int, metavar="N",
                       help="single-machine debug mode: N loopback machines 127.0.0.1..N")
    p.add_argument("--part-config", required=True, help="DGL partition JSON (<out>/<graph>.json)")
    p.add_argument("--workspace", default=".", help="folder for the generated ip-config")
    p.add_argument("--num-trainers", type=int, default=1, help="trainer processes per machine")
    p.add_argument("--num-servers", type=int, default=1, help="DGL servers per machine")
    p.add_argument("--num-samplers", type=int, default=0, help="DGL sampler processes per trainer")
    p.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS of each process")
    p.add_argument("--ssh-port", type=int, default=22)
    p.add_argument("--ssh-user", default="")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment variable for every process (repeatable)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="trainer command after '--'")
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("missing trainer command after '--'")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.debug_local:
            ip_config = os.path.join(args.workspace, "ip_config_debug.txt")
            hosts = write_debug_ip_config(ip_config, args.debug_local)
        else:
            ip_config = args.ip_config
            hosts = read_ip_config(ip_config, args.num_servers)
        check_partition_matches(args.part_config, hosts)
        for h in hosts:
            check_port_free(h, args.num_servers)
        extra = {}
        for kv in args.env:
            if "=" not in kv:
                raise LaunchError(f"--env expects K=V, got {kv!r}")
            k, v = kv.split("=", 1)
            extra[k] = v
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    launcher = Launcher(hosts, args.part_config, args.command, args.num_trainers,
                        args.num_servers, args.num_samplers, args.omp_threads, args.ssh_port,
                        args.ssh_user, extra, ip_config=ip_config)

    def on_signal(signum, _frame):
        print(f"[launcher] signal {signum}: stopping all processes", flush=True)
        launcher.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        launcher.start()
    except LaunchError as exc:
        launcher.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return launcher.wait()


if __name__ == "__main__":
    sys.exit(main())
