"""What becomes of a job's process output (:class:`ProcessOutput`): every line into
``<log_dir>/<process>.log``, and on the console only what a process marked for the user
(:data:`CONSOLE_MARK`, :data:`BAR_MARK`), error lines and the launcher's own lines -- or
everything (``verbose``). The marks are the protocol between a job process
(:mod:`lmgnn_dist.monitor`) and the launcher."""
from __future__ import annotations

import io
import os
import sys
import threading
import time
from typing import Dict, Optional

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
