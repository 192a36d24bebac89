"""The launcher as a Python API: :class:`LaunchSpec` + :func:`launch` (``launch/run_dist.py``
is a thin command line over it; the drivers of :mod:`lmgnn_dist` build the spec from a run
config, :func:`lmgnn_dist.drivers.pipeline.launch_spec`).

:func:`launch` checks everything it can before anything starts (ip-config, partition config
against the machines, local server ports, ``env`` keys, the remote hosts over ssh:
:func:`launch.remote.preflight_remote`); a failure is one ``error: ...`` line on stderr and
exit status 2. Then :class:`Launcher` starts, streams and supervises the job's processes.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from launch.hosts import (Host, LaunchError, check_partition_matches, check_port_free,
                          read_ip_config, write_debug_ip_config)
from launch.output import ProcessOutput
from launch.procs import (Proc, ProcSpec, join_streams, process_specs, start_process,
                          stop_processes)
from launch.remote import (REMOTE_KILL_GRACE_S, check_env_key, preflight_remote,
                           remote_command, ssh_argv)
from launch.watch import EXCEPTION_EXIT_CODE, JobWatch

#: name of the ip-config :meth:`Machines.resolve` writes for loopback debug machines
DEBUG_IP_CONFIG = "ip_config_debug.txt"


@dataclass(frozen=True)
class Machines:
    """Where a job runs: ``debug_local`` loopback machines 127.0.0.1..N, or the machines of
    the ip-config file ``ip_config`` (one ``IP [PORT]`` line each); give exactly one."""

    debug_local: Optional[int] = None
    ip_config: str = ""

    def resolve(self, workspace: str, num_servers: int = 1) -> Tuple[str, List[Host]]:
        """``(ip-config path, hosts)``; debug machines get free ports and their ip-config is
        written to ``<workspace>/ip_config_debug.txt``.

        Raises
        ------
        LaunchError (one line naming the file / value): neither or both given, bad ip-config,
        a bad number of debug machines.
        """
        if (self.debug_local is None) == (not self.ip_config):
            raise LaunchError("give exactly one of debug_local (--debug-local N) and ip_config "
                              f"(--ip-config FILE); got debug_local={self.debug_local!r}, "
                              f"ip_config={self.ip_config!r}")
        if self.debug_local is not None:
            path = os.path.join(workspace, DEBUG_IP_CONFIG)
            return path, write_debug_ip_config(path, self.debug_local)
        return self.ip_config, read_ip_config(self.ip_config, num_servers)


@dataclass(frozen=True)
class SSHSettings:
    """How remote hosts are reached: ``ssh -p port [-o opt ...] [user@]host``."""

    port: int = 22
    user: str = ""
    opts: Tuple[str, ...] = ()
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class LaunchSpec:
    """Everything :func:`launch` needs besides the command (see ``launch/run_dist.py --help``).

    Attributes
    ----------
    machines : where the job runs (:class:`Machines`).
    part_config : the DGL partition JSON; one partition per machine.
    workspace : folder for the generated debug ip-config.
    num_trainers, num_servers, num_samplers : processes per machine (samplers per trainer).
    omp_threads : ``OMP_NUM_THREADS`` of every process.
    ssh : :class:`SSHSettings` of the remote hosts.
    env : extra environment of every process (keys checked: :func:`~launch.remote.check_env_key`).
    log_dir : every process's output also goes to ``<log_dir>/<process>.log``.
    quiet : console shows only the lines the trainers mark for the user, error lines and the
        launcher's own (:class:`~launch.output.ProcessOutput`).
    """

    machines: Machines
    part_config: str
    workspace: str = "."
    num_trainers: int = 1
    num_servers: int = 1
    num_samplers: int = 0
    omp_threads: int = 1
    ssh: SSHSettings = field(default_factory=SSHSettings)
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Optional[str] = None
    quiet: bool = False


@dataclass
class Launcher:
    """Starts, streams and supervises the processes of one distributed job (loopback hosts as
    local subprocesses, other hosts over ssh); the supervision itself is
    :mod:`launch.procs`'s and :mod:`launch.watch`'s, shared with the Ray driver's actors."""

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
        """Start every process of :meth:`process_specs`. Raises LaunchError (no ssh client)."""
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


def prepare(spec: LaunchSpec, command: Sequence[str]) -> Launcher:
    """Check ``spec`` and build its :class:`Launcher` (starts nothing; writes only the debug
    ip-config into ``spec.workspace``).

    Raises
    ------
    LaunchError (one line naming the file, host, port or key) for anything that would stop
    the job from starting, including a failed pre-flight check of a remote host.
    """
    if not command:
        raise LaunchError("no command to run in the job's processes")
    ip_config, hosts = spec.machines.resolve(spec.workspace, spec.num_servers)
    check_partition_matches(spec.part_config, hosts)
    for h in hosts:
        check_port_free(h, spec.num_servers)
    for key in spec.env:
        check_env_key(key)
    s = spec.ssh
    checks = preflight_remote(hosts, spec.part_config, ip_config, spec.workspace, list(command),
                              spec.num_servers, s.port, s.user, list(s.opts), s.connect_timeout)
    extra = dict(spec.env)
    host_env: Dict[str, Dict[str, str]] = {}
    for ip, c in checks.items():
        for w in c.warnings:
            print(f"[launcher] warning: {w}", file=sys.stderr, flush=True)
        # torch's gloo picks its address from the hostname, which often resolves to a
        # loopback address (Debian: 127.0.1.1); name the interface holding the host's address
        if c.ifname and "GLOO_SOCKET_IFNAME" not in extra:
            host_env[ip] = {"GLOO_SOCKET_IFNAME": c.ifname}
            print(f"[launcher] host {ip}: GLOO_SOCKET_IFNAME={c.ifname}", flush=True)
    return Launcher(hosts, spec.part_config, list(command), spec.num_trainers, spec.num_servers,
                    spec.num_samplers, spec.omp_threads, s.port, s.user, extra,
                    ip_config=ip_config, ssh_opts=list(s.opts),
                    connect_timeout=s.connect_timeout, host_env=host_env,
                    output=ProcessOutput(spec.log_dir, verbose=not spec.quiet))


def launch(spec: LaunchSpec, command: Sequence[str]) -> int:
    """Run ``command`` in every process of the job ``spec`` describes; returns its exit status.

    2 with one ``error: ...`` line on stderr for bad input or a failed pre-flight check
    (nothing has been started then, :func:`prepare`), otherwise the job's exit code (first
    failing process), or ``128 + signal`` when stopped by SIGINT/SIGTERM (from the main
    thread, the handlers are installed for the job and restored after). Raises nothing for
    bad input.
    """
    try:
        launcher = prepare(spec, command)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        print(f"[launcher] signal {signum}: stopping all processes", flush=True)
        launcher.stop()
        sys.exit(128 + signum)

    old = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, on_signal)
    except ValueError:  # not the main thread: the caller handles signals
        pass
    try:
        try:
            launcher.start()
        except LaunchError as exc:
            launcher.stop()
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return launcher.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
