"""The processes of a job, one implementation for the launcher (``launch/run_dist.py``) and
the Ray driver's machine actors (:mod:`lmgnn_dist.drivers.ray_pipeline`):

- who they are: :func:`process_specs`, the environment contract of every DGL server and
  trainer (as DGL's own ``tools/launch.py``);
- starting them in their own process group with their output streamed line by line
  (:func:`start_process`), and stopping them (:func:`stop_processes`: SIGTERM, then SIGKILL);
- deciding the job's outcome from their exit codes (:class:`JobWatch`);
- restarting a failed job (:func:`run_with_restarts`) and sampling its memory
  (:class:`TreeMemoryMonitor`);
- what becomes of their output (:class:`ProcessOutput`): every line into
  ``<log_dir>/<process>.log``, and on the console only what a process marked for the user
  (:data:`CONSOLE_MARK`, :data:`BAR_MARK`), error lines and the launcher's own lines -- or
  everything (``verbose``).
"""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .hosts import Host, free_port

#: exit codes never retried: 2 = bad input (config, ip-config, partition mismatch), 3 = a job
#: process ended on an exception that is not a lost peer (``lmgnn_dist.dist_init.exit_code_of``)
NO_RETRY_EXIT_CODES = frozenset({2, 3})
#: exit code of a job process that ended on an exception (see above)
EXCEPTION_EXIT_CODE = 3
#: what each of them means, for the driver's one line
NO_RETRY_REASONS = {2: "bad input", 3: "an exception in a job process, which would repeat"}


#: a job process marks a line for the user's console with this prefix (stripped on output)
CONSOLE_MARK = "::console:: "
#: ... and a progress-bar refresh (redrawn in place on a terminal, every
#: :data:`BAR_EVERY_S` seconds otherwise; never written to the log files)
BAR_MARK = "::bar:: "
BAR_EVERY_S = 30.0


class ProcessOutput:
    """The ``on_line(name, line)`` callback of a job's processes (:func:`start_process`).

    Every line goes to ``<log_dir>/<name>.log`` (marks stripped; progress-bar refreshes are
    not logged). The console (``stream``) shows, with ``verbose``, every line as
    ``[name] line``; otherwise only the lines a process marked for the user (without the
    mark or prefix), lines that start with ``error:`` and the launcher's own lines
    (``name == "launcher"``). A bar refresh is redrawn in place on a terminal and printed
    every :data:`BAR_EVERY_S` seconds (and when it reaches 100%) elsewhere.
    Thread-safe; :attr:`last_line` keeps each process's last non-bar line.
    """

    def __init__(self, log_dir: Optional[str] = None, verbose: bool = True, stream=None):
        self.log_dir, self.verbose = log_dir, verbose
        self.stream = stream if stream is not None else sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_line: Dict[str, str] = {}
        self._files: Dict[str, io.TextIOBase] = {}
        self._lock = threading.Lock()
        self._bar_open = False
        self._bar_shown: Dict[tuple, float] = {}
        self._bar_done: set = set()
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)

    def log_path(self, name: str) -> Optional[str]:
        """``<log_dir>/<name>.log`` (spaces become ``_``), or None without a log folder."""
        return os.path.join(self.log_dir, name.replace(" ", "_") + ".log") if self.log_dir \
            else None

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            if line.startswith(BAR_MARK):
                self._bar(name, line[len(BAR_MARK):])
                return
            marked = line.startswith(CONSOLE_MARK)
            text = line[len(CONSOLE_MARK):] if marked else line
            self.last_line[name] = text
            self._log(name, text)
            if self.verbose:
                self._show(f"[{name}] {text}")
            elif marked:
                self._show(text)
            elif name == "launcher" or text.startswith("error:"):
                self._show(f"[{name}] {text}")

    def _log(self, name: str, text: str) -> None:
        path = self.log_path(name)
        if path is None:
            return
        f = self._files.get(name)
        if f is None:  # appended: a restarted job's output follows the failed attempt's
            f = self._files[name] = open(path, "a", encoding="utf-8")
            f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {name} ===\n")
        f.write(text + "\n")
        f.flush()

    def _show(self, text: str) -> None:
        if self._bar_open:
            self.stream.write("\n")
            self._bar_open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def _bar(self, name: str, text: str) -> None:
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K")
            self.stream.flush()
            self._bar_open = True
            return
        # not a terminal: a bar's state every BAR_EVERY_S seconds after it starts, and its
        # end (100%) once
        key = (name, text.split(":", 1)[0])
        now = time.time()
        if "100%" not in text:
            self._bar_done.discard(key)
            self._bar_shown.setdefault(key, now)
            if now - self._bar_shown[key] >= BAR_EVERY_S:
                self._bar_shown[key] = now
                self._show(text)
        elif key not in self._bar_done:
            self._bar_done.add(key)
            self._bar_shown.pop(key, None)
            self._show(text)

    def close(self) -> None:
        with self._lock:
            if self._bar_open:
                self.stream.write("\n")
                self._bar_open = False
            for f in self._files.values():
                f.close()
            self._files.clear()


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


@dataclass
class Outcome:
    """A job's end: ``rc`` (0, or the first failing process's code), ``failed`` (that
    process's name) and ``servers_timed_out`` (trainers ended 0, servers did not exit)."""

    rc: int
    failed: Optional[str] = None
    servers_timed_out: bool = False


class JobWatch:
    """The supervision rule of a job, from its processes' states (pure; call it while
    polling): any process that exited non-zero fails the job with its code (one killed by a
    signal first, when several have ended: its peers' errors follow from it); once every
    trainer exited 0 the DGL servers (which exit by themselves after their clients) get
    ``server_grace_s`` seconds, after which the job counts as done anyway."""

    def __init__(self, server_grace_s: float = 60.0):
        self.server_grace_s = server_grace_s
        self._servers_deadline: Optional[float] = None

    def check(self, states: Sequence[Tuple[str, bool, Optional[int]]],
              now: Optional[float] = None) -> Optional[Outcome]:
        """``states``: ``(name, is_server, exit code or None)`` per process; returns the
        outcome, or None while the job is still running."""
        now = time.time() if now is None else now
        failed = [(name, rc) for name, _, rc in states if rc not in (None, 0)]
        if failed:
            # a process killed by a signal first: its peers' errors are its consequence
            name, rc = min(failed, key=lambda f: f[1] >= 0)
            return Outcome(rc, failed=name)
        if all(rc == 0 for _, is_server, rc in states if not is_server):
            if self._servers_deadline is None:
                self._servers_deadline = now + self.server_grace_s
            if all(rc is not None for *_, rc in states):
                return Outcome(0)
            if now > self._servers_deadline:
                return Outcome(0, servers_timed_out=True)
        return None


def run_with_restarts(attempt: Callable[[int], int], max_restarts: int, what: str,
                      before_retry: Optional[Callable[[], None]] = None,
                      log_prefix: str = "[pipeline]") -> Tuple[int, int]:
    """Call ``attempt(i)`` (``i`` = 0, 1, ...) until it returns 0, at most ``1 + max_restarts``
    times; an exit code in :data:`NO_RETRY_EXIT_CODES` ends at once.

    ``before_retry()`` runs before each restart. Returns ``(exit code of the last attempt,
    number of restarts)``. Exceptions of ``attempt`` (e.g. ``KeyboardInterrupt``) propagate.
    """
    restarts = 0
    while True:
        rc = attempt(restarts)
        if rc == 0:
            return 0, restarts
        if rc in NO_RETRY_EXIT_CODES:
            print(f"{log_prefix} {what} failed with exit code {rc} ({NO_RETRY_REASONS[rc]}): "
                  "not retried", file=sys.stderr, flush=True)
            return rc, restarts
        if restarts >= max_restarts:
            print(f"{log_prefix} {what} failed with exit code {rc}; no restart left "
                  f"(launch.max_restarts={max_restarts})", file=sys.stderr, flush=True)
            return rc, restarts
        restarts += 1
        print(f"{log_prefix} {what} failed with exit code {rc}; restart {restarts}/{max_restarts}: "
              "all processes start afresh, completed stages are kept, the failed stage resumes "
              "from its last progress checkpoint (checkpoint_every) or its beginning", flush=True)
        if before_retry is not None:
            before_retry()


class TreeMemoryMonitor:
    """Samples the summed RSS of a process and all its descendants (``psutil``) every
    ``period_s`` seconds; ``peak_bytes`` is the largest sum seen. With ``role_of`` (a
    ``psutil.Process`` -> role name, asked once per process), ``peak_by_role`` is also the
    largest single process's RSS per role, in bytes. A context manager."""

    def __init__(self, pid: int, period_s: float = 0.5, role_of=None):
        self.pid, self.period_s, self.peak_bytes = pid, period_s, 0
        self.role_of, self.peak_by_role, self._roles = role_of, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    if self.role_of is not None and p.pid not in self._roles:
                        self._roles[p.pid] = self.role_of(p)
                except psutil.Error:
                    continue
                total += rss
                if self.role_of is not None:
                    role = self._roles[p.pid]
                    self.peak_by_role[role] = max(self.peak_by_role.get(role, 0), rss)
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
