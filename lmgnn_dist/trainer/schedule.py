"""Budget, learning-rate schedule, validation points and early stopping of a training stage
(:class:`~lmgnn_dist.config.training.ScheduleConfig`), kept free of DGL so it is unit-tested
on its own.

A stage's budget is ``epochs`` (passes over its training data, turned into optimizer steps
with the number of steps an epoch takes on the slowest trainer) or ``max_steps``. The
learning rate of every parameter group follows transformers' schedulers (warm-up to the
group's own rate, then linear / cosine decay or constant), as GraphStorm and the HF
``Trainer`` do; validation runs at :func:`eval_steps`; :class:`EarlyStopping` counts
validations without improvement.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch

#: our schedule names -> transformers' scheduler names
SCHEDULERS = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


def budget_steps(sched, steps_per_epoch: int) -> int:
    """Optimizer steps of the stage: ``ceil(epochs * steps_per_epoch)`` when ``sched.epochs``
    is set (at least 1), else ``sched.max_steps``. ``steps_per_epoch`` (>= 1): steps of one
    pass over the training data on the trainer with the fewest (every trainer steps the same
    number of times)."""
    if sched.epochs is None:
        return sched.max_steps
    return max(1, math.ceil(sched.epochs * max(1, steps_per_epoch)))


def make_scheduler(opt: torch.optim.Optimizer, sched, total_steps: int):
    """``transformers.get_scheduler`` for ``opt``: ``round(warmup_ratio * total_steps)``
    warm-up steps, then ``sched.schedule``'s decay over the rest; each parameter group's
    learning rate is scaled by the same factor (so groups keep their own peak rates). Call
    ``.step()`` after each optimizer step."""
    from transformers import get_scheduler

    warmup = int(round(sched.warmup_ratio * total_steps))
    return get_scheduler(SCHEDULERS[sched.schedule], opt, num_warmup_steps=warmup,
                         num_training_steps=max(1, total_steps))


def eval_steps(total_steps: int, steps_per_epoch: int, eval_every: Optional[int]) -> List[int]:
    """The steps (1-based, after the step) at which validation runs: every ``eval_every``
    steps, or at the end of every epoch (``eval_every`` null), and always after the last step.
    Empty when ``total_steps`` is 0."""
    every = eval_every or max(1, steps_per_epoch)
    points = set(range(every, total_steps + 1, every))
    if total_steps > 0:
        points.add(total_steps)
    return sorted(points)


class EarlyStopping:
    """Counts validations in a row without improvement; :meth:`update` returns True when
    ``patience`` of them have passed (never when ``patience`` is None)."""

    def __init__(self, patience: Optional[int], bad: int = 0):
        self.patience, self.bad = patience, bad

    def update(self, improved: bool) -> bool:
        self.bad = 0 if improved else self.bad + 1
        return self.patience is not None and self.bad >= self.patience
