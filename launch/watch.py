"""A job's outcome from its processes' exit codes (:class:`JobWatch`), which exit codes are
never retried, and restarting a failed job (:func:`run_with_restarts`). Pure of processes:
the callers poll their own."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

#: exit codes never retried: 2 = bad input (config, ip-config, partition mismatch), 3 = a job
#: process ended on an exception that is not a lost peer (``lmgnn_dist.dist_init.exit_code_of``)
NO_RETRY_EXIT_CODES = frozenset({2, 3})
#: exit code of a job process that ended on an exception (see above)
EXCEPTION_EXIT_CODE = 3
#: what each of them means, for the driver's one line
NO_RETRY_REASONS = {2: "bad input", 3: "an exception in a job process, which would repeat"}


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
