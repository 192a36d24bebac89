"""The bookkeeping of one stage's training loop, written once for every stage.

A stage's ``fit()`` stays written out top to bottom, like DGL's distributed examples; what
every loop keeps -- where it resumes, its losses, its validation history, the best model,
early stopping, progress checkpoints, the progress bar and TensorBoard -- lives in
:class:`StageRun`::

    run = StageRun(self, total, evals, task.primary, {"head": head}, opt, learnable)
    for step in run.steps(rank_state):            # resumes after run.done; stops early
        loss = ...one optimizer step...
        run.record(step, loss, line)                # losses, bar, TensorBoard, log line
        if run.validation_due(step):
            run.validated(step, evaluate(...), head, learnable)  # history, best, early stop
    run.best.restore(head, learnable)
    metrics = {**run.summary(), ...}
    run.close(metrics)

Units (steps or epochs) are numbered from 1 (after the first); 0 is the model the stage
starts from. Every rank makes the same calls in the same order, so the collective progress
checkpoint (:class:`~.checkpoints.Progress`) is written by all trainers alike.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterator, Optional, Sequence

import torch

from .evaluation import BestModel, scalar_metrics
from ..monitor import StageMonitor
from .checkpoints import Progress
from .schedule import EarlyStopping


class StageRun:
    """One stage's loop state; see the module docstring.

    Parameters
    ----------
    trainer : the :class:`~.base.StageTrainer` (env, generator, log).
    total : units (optimizer steps or epochs) of the stage.
    evals : the units after which validation runs (:func:`~.schedule.eval_steps`).
    primary : the validation metric that selects the kept model (higher is better).
    modules, opt, learnable : what the progress checkpoint saves and a resumed job restores
        (module name -> module; the optimizer; the learnable embeddings or None).
    unit : ``step`` or ``epoch``; ``steps_per_unit``: optimizer steps per unit (progress
        checkpoints are due every ``checkpoint_every`` optimizer steps).
    patience : early stopping after this many validations without improvement (None: off).
    name : the stage's label (bar, TensorBoard folder, progress checkpoint); default the
        trainer's stage name.
    log_every : the log line of :meth:`record` is written at units 1, 1 + log_every, ...
        and at the last unit.

    Attributes
    ----------
    state : the resumed rank state (``{}`` for a fresh stage); ``done``: units done.
    losses, history : loss per unit; ``[{"step": s, <metric>: value, ...}, ...]``.
    best : :class:`~lmgnn_dist.trainer.evaluation.BestModel`; ``stopped``: stopped early.
    """

    def __init__(self, trainer, total: int, evals: Sequence[int], primary: str,
                 modules: Dict[str, torch.nn.Module], opt, learnable=None, *,
                 unit: str = "step", steps_per_unit: int = 1, patience: Optional[int] = None,
                 name: Optional[str] = None, log_every: int = 10):
        self.trainer, self.name = trainer, name or trainer.name
        self.total, self.evals, self.unit = total, set(evals), unit
        self.modules, self.opt, self.learnable = modules, opt, learnable
        self.steps_per_unit, self.log_every = steps_per_unit, log_every
        self.progress = Progress(trainer.env, self.name, trainer.gen, unit,
                                 trainer.start.inputs)
        #: progress checkpoints on (the trainer's ``progress_checkpoints``; GLEM's phases: off)
        self.checkpoints = trainer.progress_checkpoints
        self.state = self.progress.load(modules, opt, learnable) if self.checkpoints else {}
        self.done: int = self.state.get("step", 0)
        self.losses = list(self.state.get("losses", []))
        self.history = list(self.state.get("val_history", []))
        self.best = BestModel.from_state(primary, self.state)
        self.early = EarlyStopping(patience, self.state.get("bad_evals", 0))
        self.stopped = False
        self.mon = StageMonitor(trainer.env, self.name, total, unit, self.done)

    def steps(self, rank_state: Callable[[], dict] = dict) -> Iterator[int]:
        """The units still to run, ``done + 1 .. total``. After each one's body: a progress
        checkpoint when due (``rank_state()``: the stage's own per-trainer state to save
        beside the loop's), then stop if a validation asked to stop early."""
        for step in range(self.done + 1, self.total + 1):
            yield step
            self.done = step
            if self.checkpoints and self.progress.due(step, self.total, self.steps_per_unit):
                self.progress.save(step, self.modules, self.opt, self.learnable,
                                   {**rank_state(), **self.loop_state()})
            if self.stopped:
                self.trainer.log(f"[{self.name}] early stop after {self.unit} {step}: "
                                 f"{self.early.bad} validations without improvement (best at "
                                 f"{self.unit} {self.best.epoch})")
                break

    def batches(self, batch_size: int, fanouts, pseudo=None) -> Iterator:
        """The task's training batches epoch after epoch, each epoch from its own generator
        (:meth:`~.base.StageTrainer.epoch_generator`), starting after the :attr:`done` batches
        a resumed stage has already trained on (epochs of this trainer's own batch count; the
        skipped ones are re-drawn, not trained on)."""
        trainer = self.trainer
        per_epoch = max(1, trainer.task.num_train_batches(batch_size))
        epoch, skip = divmod(self.done, per_epoch)
        while True:
            for i, batch in enumerate(trainer.task.train_batches(
                    fanouts, batch_size, trainer.epoch_generator(epoch), pseudo)):
                if i >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0

    def loop_state(self) -> dict:
        """What a progress checkpoint keeps of the loop (losses, history, early stopping,
        the best model)."""
        return {"losses": self.losses, "val_history": self.history,
                "bad_evals": self.early.bad, **self.best.state()}

    def record(self, step: int, loss: float, line: Optional[str] = None,
               **scalars: Optional[float]) -> None:
        """Unit ``step`` trained with mean loss ``loss``: kept in :attr:`losses`, written to
        TensorBoard with ``scalars`` (``loss/train``, or ``loss/train_epoch`` for epochs),
        the bar moves on; ``line`` is logged at units 1, 1 + log_every, ... and the last."""
        self.losses.append(loss)
        if self.unit == "step":
            self.mon.step(step, loss, **scalars)
        else:
            self.mon.scalars({"loss/train_epoch": loss, **scalars}, step)
            last = self.history[-1] if self.history else {}
            p = self.best.primary
            self.mon.advance(loss, f"val {p} {last[p]:.4f}"
                             if last.get("step") == step and p in last else "")
        if line is not None and (step % self.log_every == 1 % self.log_every
                                 or step == self.total):
            self.trainer.log(f"[{self.name}] {self.unit} {step:4d}/{self.total}  {line}")

    def scalars(self, values: Dict[str, Optional[float]], step: int) -> None:
        """More TensorBoard scalars at ``step`` (e.g. per optimizer step inside an epoch)."""
        self.mon.scalars(values, step)

    def validation_due(self, step: int) -> bool:
        return step in self.evals

    def validated(self, step: int, val: Dict[str, object], head, learnable=None, lms=None,
                  line: Optional[str] = None) -> bool:
        """Validation metrics ``val`` of the model after unit ``step``: appended to the
        history and TensorBoard (``val/<metric>``); the model (``head``, and the learnable
        rows and LMs when given) kept when ``val[primary]`` is the best so far; early
        stopping counts it (not the start model, ``step`` 0). ``line`` is logged with
        whether it is the best. Returns whether it improved."""
        scalars = {k: v for k, v in scalar_metrics(val).items() if not k.startswith("num_")}
        self.history.append({"step": step, **scalars})
        improved = self.best.update(step, val, head, learnable, lms)
        self.mon.scalars({f"val/{k}": v for k, v in scalars.items()}, step)
        if step > 0:
            self.stopped = self.early.update(improved) and step < self.total
        if line is not None:
            self.trainer.log(f"[{self.name}] {self.unit} {step}: {line}" + (
                "  (best so far)" if improved else f"  (best: {self.unit} {self.best.epoch})"))
        return improved

    def summary(self) -> dict:
        """The loop's metrics: ``loss_first``/``loss_last`` (means of the first/last fifth of
        the units), ``losses``, ``steps`` (done), ``stopped_early``, ``best_step``,
        ``val_history``."""
        k, losses = max(1, len(self.losses) // 5), self.losses
        return {"loss_first": sum(losses[:k]) / k if losses else None,
                "loss_last": sum(losses[-k:]) / k if losses else None,
                "losses": losses, "steps": self.done, "stopped_early": self.stopped,
                "best_step": self.best.epoch, "val_history": self.history}

    def close(self, metrics: Optional[dict] = None) -> None:
        """Close the bar; write ``metrics`` as the stage's summary scalars."""
        self.mon.close(metrics)
