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
``ssh`` (``--ssh-port``, ``--ssh-user``, ``--ssh-opt``). Each process's output is streamed with
a ``[server-m.s]``/``[trainer-r]`` prefix (``--log-dir``: also into ``<dir>/<process>.log``;
``--quiet``: on the console only what the trainers mark for the user, error lines and the
launcher's own, see :class:`launch.procs.ProcessOutput`). If any process fails, the others are stopped (their
whole process groups) and the launcher exits with that process's code; Ctrl-C does the same.

Remote hosts: nothing is copied. Before anything starts, one ``ssh`` call per remote host
(:func:`preflight_remote`) checks that the working directory, the partition config, this
machine's partition files, the ip-config, the workspace, the program and every command
argument that names a local file exist there, and that the server ports are free; any failure
is reported in one line naming the host and path/port. Each remote process runs under a small
``sh`` wrapper (:func:`remote_command`) that puts it in its own process group and kills that
group when the ssh channel's stdin closes, so stopping the local ``ssh`` client (or the
launcher dying) tears the remote processes down too.
"""
from __future__ import annotations

import argparse
import os
import signal
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script: python launch/run_dist.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from launch.hosts import (Host, LaunchError, check_partition_matches,  # noqa: E402
                          check_port_free, read_ip_config, write_debug_ip_config)
from launch.procs import (EXCEPTION_EXIT_CODE, JobWatch, Proc, ProcessOutput,  # noqa: E402
                          ProcSpec, join_streams, process_specs, start_process, stop_processes)
from launch.remote import (REMOTE_KILL_GRACE_S, check_env_key,  # noqa: E402
                           preflight_remote, remote_command, ssh_argv)


@dataclass
class Launcher:
    """Starts, streams and supervises the processes of one distributed job (loopback hosts as
    local subprocesses, other hosts over ssh); the supervision itself is
    :mod:`launch.procs`'s, shared with the Ray driver's actors."""

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
    ssh_opts: List[str] = field(default_factory=list)
    connect_timeout: float = 10.0
    host_env: Dict[str, Dict[str, str]] = field(default_factory=dict)
    procs: List[Proc] = field(default_factory=list)
    job_id: str = field(default_factory=lambda: os.urandom(4).hex())
    #: where the processes' lines go (log files, console filter); default: all to the console
    output: ProcessOutput = field(default_factory=ProcessOutput)

    def _print(self, name: str, line: str) -> None:
        self.output(name, line)

    def _spawn(self, spec: ProcSpec) -> None:
        host = self.hosts[spec.machine]
        if host.is_local:
            self.procs.append(start_process(spec.name, self.command, dict(os.environ, **spec.env),
                                            spec.is_server, self._print))
            return
        if shutil.which("ssh") is None:
            raise LaunchError(
                f"host {host.ip} is remote but no 'ssh' client is installed here; "
                "install openssh-client or run on loopback hosts")
        # host_env (found by the pre-flight check, e.g. GLOO_SOCKET_IFNAME) < base < --env
        env = dict(self.host_env.get(host.ip, {}), **spec.env)
        argv = (ssh_argv(host, self.ssh_port, self.ssh_user, self.ssh_opts, self.connect_timeout)
                + [remote_command(os.getcwd(), env, self.command)])
        self.procs.append(start_process(spec.name, argv, None, spec.is_server, self._print,
                                        remote=True))

    def start(self) -> None:
        for spec in self.process_specs():
            self._spawn(spec)

    def process_specs(self, master_port: Optional[int] = None) -> List[ProcSpec]:
        """This job's processes as :func:`~launch.procs.process_specs` describes them."""
        return process_specs(self.hosts, self.part_config, self.ip_config, self.num_trainers,
                             self.num_servers, self.num_samplers, self.omp_threads,
                             self.extra_env, self.graph_format, self.job_id, master_port)

    def stop(self, sig: int = signal.SIGTERM, wait_s: float = 10.0) -> None:
        """Stop every process that is still running (its whole group), SIGKILL after
        ``wait_s``; remote ones through their ssh channel (:func:`~launch.procs.
        stop_processes`, with ``REMOTE_KILL_GRACE_S`` more). Raises nothing."""
        stop_processes(self.procs, sig, wait_s, remote_grace_s=REMOTE_KILL_GRACE_S)

    def wait(self) -> int:
        """Supervise until all trainers end; returns 0 or the first failing exit code."""
        watch = JobWatch(self.server_grace_s)
        while True:
            outcome = watch.check([(p.name, p.is_server, p.popen.poll()) for p in self.procs])
            if outcome is None:
                time.sleep(0.2)
                continue
            if outcome.failed or outcome.servers_timed_out:
                self._print("launcher", f"{outcome.failed} exited with code {outcome.rc}; "
                            "stopping the others" if outcome.failed else
                            "servers did not exit after the trainers; stopping them")
                self.stop()
            join_streams(self.procs)
            if outcome.rc == EXCEPTION_EXIT_CODE:  # say what it ended on, once, last
                log = self.output.log_path(outcome.failed or "")
                self._print("launcher", f"{outcome.failed} ended on: "
                            f"{self.output.last_line.get(outcome.failed, '?')}"
                            + (f" (its output: {log})" if log else ""))
            elif outcome.failed and self.output.log_dir:
                self._print("launcher", f"the processes' output is in {self.output.log_dir}/")
            self.output.close()
            return outcome.rc


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
    p.add_argument("--ssh-port", type=int, default=22, help="ssh port of the remote hosts")
    p.add_argument("--ssh-user", default="", help="ssh user on the remote hosts")
    p.add_argument("--ssh-opt", action="append", default=[], metavar="OPT",
                   help="extra 'ssh -o' option, e.g. IdentityFile=~/.ssh/k (repeatable; "
                        "overrides the launcher's defaults)")
    p.add_argument("--ssh-connect-timeout", type=float, default=10.0, metavar="S",
                   help="ssh ConnectTimeout in seconds (default 10)")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment variable for every process (repeatable)")
    p.add_argument("--log-dir", metavar="DIR",
                   help="write each process's output to DIR/<process>.log")
    p.add_argument("--quiet", action="store_true",
                   help="console: only the lines the trainers mark for the user (one progress "
                        "bar and one summary line per stage), error lines and the launcher's "
                        "own; everything else only in --log-dir")
    p.add_argument("command", nargs=argparse.REMAINDER, help="trainer command after '--'")
    args = p.parse_args(argv)
    if args.command and args.command[0] == "--":
        args.command = args.command[1:]
    if not args.command:
        p.error("missing trainer command after '--'")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code.

    2 with one ``error: ...`` line on stderr for bad input or a failed pre-flight check
    (nothing has been started then), otherwise the job's exit code (first failing process),
    ``128 + signal`` when stopped by SIGINT/SIGTERM. Raises nothing for bad input.
    """
    args = parse_args(argv)
    try:
        if args.debug_local is not None:
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
            check_env_key(k)
            extra[k] = v
        checks = preflight_remote(hosts, args.part_config, ip_config, args.workspace,
                                  args.command, args.num_servers, args.ssh_port, args.ssh_user,
                                  args.ssh_opt, args.ssh_connect_timeout)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    host_env: Dict[str, Dict[str, str]] = {}
    for ip, c in checks.items():
        for w in c.warnings:
            print(f"[launcher] warning: {w}", file=sys.stderr, flush=True)
        # torch's gloo picks its address from the hostname, which often resolves to a
        # loopback address (Debian: 127.0.1.1); name the interface holding the host's address
        if c.ifname and "GLOO_SOCKET_IFNAME" not in extra:
            host_env[ip] = {"GLOO_SOCKET_IFNAME": c.ifname}
            print(f"[launcher] host {ip}: GLOO_SOCKET_IFNAME={c.ifname}", flush=True)
    launcher = Launcher(hosts, args.part_config, args.command, args.num_trainers,
                        args.num_servers, args.num_samplers, args.omp_threads, args.ssh_port,
                        args.ssh_user, extra, ip_config=ip_config, ssh_opts=list(args.ssh_opt),
                        connect_timeout=args.ssh_connect_timeout, host_env=host_env,
                        output=ProcessOutput(args.log_dir, verbose=not args.quiet))

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
