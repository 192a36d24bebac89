"""The processes of a job, one implementation for the launcher (``launch/run_dist.py``) and
the Ray driver's machine actors (:mod:`lmgnn_dist.drivers.ray_pipeline`):

- who they are: :func:`process_specs`, the environment contract of every DGL server and
  trainer (as DGL's own ``tools/launch.py``);
- starting them in their own process group with their output streamed line by line
  (:func:`start_process`), and stopping them (:func:`stop_processes`: SIGTERM, then SIGKILL).

The rest of a job's process handling lives beside it, each in its own module:
:mod:`launch.watch` (the outcome from exit codes, :class:`JobWatch`; restarts,
:func:`run_with_restarts`), :mod:`launch.output` (what becomes of their output,
:class:`ProcessOutput`, :data:`CONSOLE_MARK`, :data:`BAR_MARK`) and :mod:`launch.memory`
(:class:`TreeMemoryMonitor`). Their names are importable from here too.
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from .hosts import Host, free_port
from .memory import TreeMemoryMonitor
from .output import BAR_EVERY_S, BAR_MARK, CONSOLE_MARK, ProcessOutput
from .watch import (EXCEPTION_EXIT_CODE, NO_RETRY_EXIT_CODES, NO_RETRY_REASONS, JobWatch, Outcome,
                    run_with_restarts)

__all__ = [
    # this module
    "ProcSpec", "process_specs", "Proc", "start_process", "stop_processes", "join_streams",
    # re-exported (their home is named)
    "TreeMemoryMonitor",                                            # launch.memory
    "BAR_EVERY_S", "BAR_MARK", "CONSOLE_MARK", "ProcessOutput",     # launch.output
    "EXCEPTION_EXIT_CODE", "NO_RETRY_EXIT_CODES", "NO_RETRY_REASONS",  # launch.watch
    "JobWatch", "Outcome", "run_with_restarts",
]

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
    actors of :mod:`lmgnn_dist.drivers.ray_pipeline`.
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
    """A started process: its name, whether it is a DGL server, and its output thread.
    ``remote``: an ``ssh`` client whose closed stdin stops the remote process group."""

    name: str
    popen: subprocess.Popen
    is_server: bool
    thread: Optional[threading.Thread] = None
    remote: bool = False


def start_process(name: str, argv: Sequence[str], env: Optional[Dict[str, str]],
                  is_server: bool, on_line: Callable[[str, str], None], remote: bool = False,
                  cwd: Optional[str] = None, preexec_fn=None) -> Proc:
    """Start ``argv`` in a new session (its own process group) with ``env`` (the full
    environment; None: inherit), stdout+stderr piped to a thread that calls
    ``on_line(name, line)`` for every non-blank line. A remote process (an ssh client) gets a
    stdin pipe that is never written: closing it stops the remote side."""
    popen = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             stdin=subprocess.PIPE if remote else None, preexec_fn=preexec_fn)
    proc = Proc(name, popen, is_server, remote=remote)
    proc.thread = threading.Thread(target=_stream, args=(proc, on_line), daemon=True)
    proc.thread.start()
    return proc


def _stream(proc: Proc, on_line: Callable[[str, str], None]) -> None:
    assert proc.popen.stdout is not None
    # universal newlines: a progress bar's '\r' refreshes become lines of their own
    text = io.TextIOWrapper(proc.popen.stdout, encoding="utf-8", errors="replace", newline=None)
    for line in text:
        line = line.rstrip("\n")
        if line.strip():
            on_line(proc.name, line)


def stop_processes(procs: Sequence[Proc], sig: int = signal.SIGTERM, wait_s: float = 10.0,
                   remote_grace_s: float = 0.0) -> None:
    """Stop every process still running (its whole group), SIGKILL after ``wait_s``.

    A remote process is stopped by closing its ssh client's stdin (the remote wrapper then
    stops its group); it gets ``remote_grace_s`` more before its ssh client is killed.
    Raises nothing.
    """
    for p in procs:
        if p.popen.poll() is None:
            if p.remote and p.popen.stdin is not None:
                try:
                    p.popen.stdin.close()
                except OSError:
                    pass
                continue
            try:
                os.killpg(p.popen.pid, sig)
            except ProcessLookupError:
                pass
    deadline = time.time() + wait_s
    for p in procs:
        extra = remote_grace_s if p.remote else 0.0
        try:
            p.popen.wait(max(0.0, deadline + extra - time.time()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.popen.wait()


def join_streams(procs: Sequence[Proc], timeout: float = 5.0) -> None:
    """Wait (briefly) until the output of ended processes has been passed on."""
    for p in procs:
        if p.thread is not None:
            p.thread.join(timeout=timeout)
