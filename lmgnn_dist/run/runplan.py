"""The run plan: which stages a run has, which are done, what each starts from.

One plan serves the trainer entry point (:mod:`lmgnn_dist.jobs.train`), the launcher-based driver
(:mod:`lmgnn_dist.drivers.pipeline`) and the Ray driver (:mod:`lmgnn_dist.drivers.ray_pipeline`):

- ``stages``: checkpoint names in order -- ``baseline`` (frozen LM + RGCN, if
  ``baseline: true``), then ``stage<k>`` for ``k`` in ``cfg.stages``;
- :meth:`RunPlan.is_done`: ``<output_dir>/<stage>/metrics.json`` exists (a checkpoint folder
  is only ever renamed into place complete);
- :meth:`RunPlan.start_of`: stage 2 and stage 3 start from the stage-1 LMs when stage 1 is
  complete (else the configured LMs), stage 3 from the stage-2 GNN + decoder;
- :meth:`RunPlan.train_command`: the command of every process of a job that runs some of
  the stages, with typed options (``--stage``, ``--resume``), not config strings;
- :meth:`RunPlan.prepare_output_dir` / :func:`clean_stale_checkpoints`: what the drivers do
  to ``output_dir`` before a job (and before each restart).
"""
from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from . import checkpoint as ckpt
from ..stages import STAGES, StageStart, stage

# temp / old folders of an interrupted ``checkpoint.write_stage`` (".stage2.tmp-<pid>",
# ".stage3.partial.tmp-<pid>") and trainers' staging folders (".stage3.partial.staging")
_STALE_CKPT = re.compile(r"^\.(baseline|stage\d+)(_refit)?(\.partial)?\.((tmp|old)-\d+|staging)$")


class PlanError(ValueError):
    """A stage cannot run: a stage it starts from is missing, or an unknown stage name."""


@dataclass(frozen=True)
class RunPlan:
    """The stages of one run in ``output_dir``; see the module docstring.

    ``resume``: complete stages are not run again (the drivers always start their jobs with
    it; a run with ``resume: false`` has its old checkpoints removed first instead).
    """

    output_dir: str
    stages: Sequence[str]
    resume: bool = True

    @classmethod
    def from_config(cls, cfg, only: Optional[Sequence[str]] = None,
                    resume: Optional[bool] = None) -> "RunPlan":
        """The stages ``cfg`` configures, or those of them named in ``only``.

        Raises
        ------
        PlanError naming a stage of ``only`` that the config does not run.
        """
        planned = [s.name for s in STAGES
                   if (cfg.baseline if s.number is None else s.number in cfg.stages)]
        if only:
            extra = [s for s in only if s not in planned]
            if extra:
                raise PlanError(f"stage(s) {extra} are not in this run's plan {planned} "
                                "(config keys baseline / stages)")
            planned = [s for s in planned if s in only]
        return cls(cfg.output_dir, tuple(planned), cfg.resume if resume is None else resume)

    def is_done(self, name: str) -> bool:
        return ckpt.is_complete(self.output_dir, name)

    def to_run(self) -> List[str]:
        """The planned stages still to run (all of them without ``resume``)."""
        return [s for s in self.stages if not (self.resume and self.is_done(s))]

    def start_of(self, name: str) -> StageStart:
        """Where stage ``name`` starts from, given the checkpoints complete now.

        Raises
        ------
        PlanError if ``name`` is stage 3 and the stage-2 checkpoint is not complete.
        """
        try:
            row = stage(name)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        lm_dir = (ckpt.stage_dir(self.output_dir, row.lms_from)
                  if row.lms_from and self.is_done(row.lms_from) else None)
        if row.head_from is None:
            return StageStart(lm_dir=lm_dir)
        if not self.is_done(row.head_from):
            head = stage(row.head_from).title
            raise PlanError(f"{row.title} needs the {head.replace(' ', '-')} checkpoint "
                            f"{ckpt.stage_dir(self.output_dir, row.head_from)}; run {head} "
                            "first")
        return StageStart(lm_dir=lm_dir, head_dir=ckpt.stage_dir(self.output_dir, row.head_from))

    def check(self) -> None:
        """Before anything starts: every stage to run must find what it starts from, complete
        now or made by an earlier stage of this plan.

        Raises
        ------
        PlanError naming the missing checkpoint (stage 3 without stage 2).
        """
        to_run = self.to_run()
        for name in to_run:
            head_from = stage(name).head_from
            if head_from is not None and head_from not in to_run:
                self.start_of(name)

    def results(self) -> Dict[str, dict]:
        """The metrics of every planned stage whose checkpoint is complete, in order."""
        return {s: ckpt.load_metrics(self.output_dir, s) for s in self.stages if self.is_done(s)}

    def train_command(self, config_path: str, stages: Optional[Sequence[str]] = None
                      ) -> List[str]:
        """The command of every process of a job running ``stages`` (default: the whole
        plan) of this run; always ``--resume`` (a restarted job skips complete stages)."""
        cmd = [sys.executable, "-m", "lmgnn_dist.jobs.train", "--config", config_path, "--resume"]
        for s in (stages or ()):
            cmd += ["--stage", s]
        return cmd

    def prepare_output_dir(self) -> None:
        """Make ``output_dir`` safe to run every job with ``--resume``.

        Removes stale checkpoint temp folders and, without ``resume``, the earlier checkpoints
        of the planned stages (the run would replace them anyway; left in place, a restart
        after a failure would skip a stage on a stale checkpoint).
        """
        root = Path(self.output_dir)
        root.mkdir(parents=True, exist_ok=True)
        clean_stale_checkpoints(self.output_dir)
        if not self.resume:
            old = [n for s in self.stages for n in (s, *ckpt.progress_names(s))
                   if (root / n).exists()]
            for name in old:
                shutil.rmtree(root / name)
            if old:
                print(f"[pipeline] resume: false: removed the earlier checkpoint(s) "
                      f"{', '.join(old)} in {self.output_dir}", flush=True)


def clean_stale_checkpoints(output_dir: str) -> List[str]:
    """Remove the temp/old/staging folders a killed job left in ``output_dir``.

    Only call this while no process of a job writes into ``output_dir``. A checkpoint folder
    ``<stage>/`` itself is only ever created complete, so it is left alone, and so is anything
    whose name is not one of ours. Returns the names removed.
    """
    removed = []
    root = Path(output_dir)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and _STALE_CKPT.match(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
    if removed:
        print(f"[pipeline] removed stale checkpoint temp folders of a killed run: "
              f"{', '.join(removed)}", flush=True)
    return removed
