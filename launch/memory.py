"""Memory of a running job: the summed RSS of a process tree, sampled in a thread
(:class:`TreeMemoryMonitor`)."""
from __future__ import annotations

import threading


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
