"""What a stage shows while it runs: one progress bar on the console and TensorBoard scalars.

Job processes log with Python :mod:`logging` (logger ``lmgnn_dist``, one line per record on
stdout, set up by :func:`setup_logging`). The launcher (:class:`launch.output.ProcessOutput`)
writes every line to ``<output_dir>/logs/<process>.log`` and shows on the console only the
lines marked for the user: records logged with ``extra={"console": True}`` (the
:data:`~launch.output.CONSOLE_MARK` prefix) and progress-bar refreshes
(:data:`~launch.output.BAR_MARK`). A process whose stdout is a terminal (started by hand)
prints plain lines and a plain ``tqdm`` bar instead.

:class:`StageMonitor` is created in each trainer's ``fit()`` and fed one call per loop
iteration: on rank 0 it drives one ``tqdm`` bar (steps or epochs, with rate, loss and ETA)
and a ``torch.utils.tensorboard.SummaryWriter`` under ``<output_dir>/tb/<stage>/`` (training
loss per step or epoch, validation metrics per epoch, any other scalars, and the stage's
summary scalars at the end). On other ranks every call is a no-op.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Dict, Optional

from launch.output import BAR_MARK, CONSOLE_MARK

LOGGER = logging.getLogger("lmgnn_dist")


def marked() -> bool:
    """Whether this process's lines go through a launcher (stdout is not a terminal)."""
    return not sys.stdout.isatty()


class _MarkFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return CONSOLE_MARK + text if getattr(record, "console", False) and marked() else text


def setup_logging(level: int = logging.INFO) -> logging.Logger:
    """Log ``lmgnn_dist`` records to stdout, one line each (the launcher reads them)."""
    if not any(getattr(h, "_lmgnn", False) for h in LOGGER.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_MarkFormatter("%(message)s"))
        handler._lmgnn = True  # type: ignore[attr-defined]
        LOGGER.addHandler(handler)
    LOGGER.setLevel(level)
    LOGGER.propagate = False
    return LOGGER


def log(msg: str, console: bool = False) -> None:
    """Log one line; ``console``: it is meant for the user's console too."""
    if not LOGGER.handlers:
        setup_logging()
    LOGGER.info(msg, extra={"console": console})


class BarStream:
    """A file for ``tqdm(file=...)`` whose refreshes become marked lines on stdout (one per
    changed refresh), which the launcher redraws in place; plain stderr on a terminal."""

    def __init__(self):
        self._last = ""

    def write(self, s: str) -> None:
        if not marked():
            sys.stderr.write(s)
            return
        for piece in s.replace("\r", "\n").split("\n"):
            piece = piece.strip()
            if piece and piece != self._last:
                self._last = piece
                sys.stdout.write(BAR_MARK + piece + "\n")
        sys.stdout.flush()

    def flush(self) -> None:
        (sys.stdout if marked() else sys.stderr).flush()


def progress_bar(total: int, desc: str, unit: str, initial: int = 0, disable: bool = False):
    """A ``tqdm`` bar on :class:`BarStream` (fixed width: the launcher's console is not the
    process's terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=BarStream(),
                disable=disable, ncols=100, ascii=True, mininterval=0.5, dynamic_ncols=False)


def _writer(output_dir: str, stage: str, initial: int):
    """The stage's ``SummaryWriter``. A stage that starts afresh replaces the event files of
    an earlier run of it; a resumed one adds to them (steps after its progress checkpoint
    then appear twice: the failed attempt's and the resumed ones)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard not installed: the bar still works
        log(f"[{stage}] tensorboard is not installed: no event files")
        return None
    folder = Path(output_dir) / "tb" / stage
    if initial == 0 and folder.exists():
        import shutil

        shutil.rmtree(folder)
    return SummaryWriter(str(folder))


class StageMonitor:
    """One stage's progress bar and TensorBoard writer (rank 0 only; no-ops elsewhere).

    Parameters
    ----------
    env : the trainer's :class:`~lmgnn_dist.trainer.base.StageEnv` (config, rank).
    stage : the stage's name (``stage1``, ``baseline``, ...): bar label and ``tb/<stage>/``.
    total : steps or epochs of the stage; ``initial``: those done before a resume.
    unit : ``step`` or ``epoch``.
    """

    def __init__(self, env, stage: str, total: int, unit: str = "step", initial: int = 0,
                 desc: Optional[str] = None):
        self.stage, self.unit = stage, unit
        self.main = bool(env.ctx.is_main)
        self.bar = progress_bar(total, desc or stage, unit, initial) if self.main else None
        self.writer = _writer(env.cfg.output_dir, stage, initial) if self.main else None

    def scalars(self, values: Dict[str, Optional[float]], step: int) -> None:
        """Write the numeric ``values`` (name -> number; None and non-numbers skipped)."""
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, float(v), step)

    def step(self, step: int, loss: float, **scalars: Optional[float]) -> None:
        """One optimizer step done: ``loss/train`` and ``scalars`` at ``step``; bar +1."""
        self.scalars({"loss/train": loss, **scalars}, step)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f}", refresh=False)
            self.bar.update(1)

    def advance(self, loss: float, postfix: str = "") -> None:
        """One unit done (an epoch): the bar moves on, showing ``loss`` and ``postfix``."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss:.4f}" + (f" {postfix}" if postfix else ""),
                                     refresh=False)
            self.bar.update(1)

    def close(self, summary: Optional[Dict[str, object]] = None) -> None:
        """End the bar; write the stage's summary scalars (flattened ``a/b`` names, e.g.
        ``summary/test_acc``, ``time_split_s/lm_grad_forward``, ``cache/hit_rate``)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.scalars(dict(_flatten(summary or {}, "summary")), 0)
            self.writer.close()
            self.writer = None


def _flatten(d: Dict[str, object], prefix: str):
    for k, v in d.items():
        if isinstance(v, dict):
            # the stage-3 instrumentation keeps its own names (time_split_s/..., cache/...)
            yield from _flatten(v, k if prefix == "summary" else f"{prefix}/{k}")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield f"{prefix}/{k}", v
