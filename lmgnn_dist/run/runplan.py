"""The run plan: which stages a run has, which are done, what each starts from.

One plan serves the trainer entry point (:mod:`lmgnn_dist.jobs.train`), the launcher-based driver
(:mod:`lmgnn_dist.drivers.pipeline`) and the Ray driver (:mod:`lmgnn_dist.drivers.ray_pipeline`):

- ``stages``: checkpoint names in order -- ``baseline`` (frozen LM + RGCN, if
  ``baseline: true``), then ``stage<k>`` for ``k`` in ``cfg.stages``;
- :meth:`RunPlan.is_done`: ``<output_dir>/<stage>/metrics.json`` exists (a checkpoint folder
  is only ever renamed into place complete) and the stage was trained on what the config
  asks for now (its recorded ``inputs``, :mod:`.provenance`); :meth:`RunPlan.stale` says
  which complete stages were not, and why (they run again; ``resume: strict`` refuses);
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from . import checkpoint as ckpt
from . import provenance
from ..stages import STAGE_ORDER, STAGES, StageStart, stage

# temp / old folders of an interrupted ``checkpoint.write_stage`` (".stage2.tmp-<pid>",
# ".stage3.partial.tmp-<pid>") and trainers' staging folders (".stage3.partial.staging")
_STALE_CKPT = re.compile(r"^\.(baseline|stage\d+)(_refit)?(\.partial)?\.((tmp|old)-\d+|staging)$")


class PlanError(ValueError):
    """A stage cannot run: a stage it starts from is missing, or an unknown stage name."""


@dataclass(frozen=True)
class RunPlan:
    """The stages of one run in ``output_dir``; see the module docstring.

    ``resume``: complete stages are not run again (the drivers always start their jobs with
    it; a run with ``resume: false`` has its old checkpoints removed first instead);
    ``"strict"``: neither is a complete stage trained on other inputs (:meth:`check` refuses).
    ``base_inputs``: stage -> its inputs less ``starts_from``
    (:func:`~lmgnn_dist.run.provenance.stage_inputs`); empty: inputs are not compared (every
    complete checkpoint is reused, as before they were recorded).
    """

    output_dir: str
    stages: Sequence[str]
    resume: Any = True
    base_inputs: Mapping[str, dict] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg, only: Optional[Sequence[str]] = None,
                    resume: Optional[bool] = None,
                    fingerprint: Optional[Mapping[str, Any]] = None) -> "RunPlan":
        """The stages ``cfg`` configures, or those of them named in ``only``; with the
        partitions' ``fingerprint`` (``lmgnn_meta.json``'s, or
        :func:`partition.fingerprint.fingerprint` of the TAG and options) the plan compares
        every checkpoint's recorded inputs with what ``cfg`` asks for.

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
        base = ({} if fingerprint is None else
                {s: provenance.stage_inputs(cfg, s, fingerprint, {}) for s in STAGE_ORDER})
        return cls(cfg.output_dir, tuple(planned), cfg.resume if resume is None else resume,
                   base)

    def _complete(self, name: str) -> bool:
        return ckpt.is_complete(self.output_dir, name)

    def inputs(self, name: str) -> Optional[dict]:
        """What stage ``name`` trains on if it runs now: its base inputs plus the digests of
        the checkpoints it starts from (stage 1's LMs when stage 1 is planned or done, the
        head's stage); None without base inputs."""
        if name not in self.base_inputs:
            return None
        row, starts = stage(name), {}
        if row.lms_from and (row.lms_from in self.stages or self.is_done(row.lms_from)):
            starts[row.lms_from] = provenance.inputs_digest(self.inputs(row.lms_from))
        if row.head_from:
            starts[row.head_from] = provenance.inputs_digest(self.inputs(row.head_from))
        return dict(self.base_inputs[name], starts_from=starts)

    def changes(self, name: str) -> List[str]:
        """Why the complete checkpoint of ``name`` was trained on other inputs than
        :meth:`inputs` (empty: it matches, it is not complete, or inputs are not compared)."""
        wanted = self.inputs(name)
        if wanted is None or not self._complete(name):
            return []
        recorded = ckpt.load_metrics(self.output_dir, name).get("inputs")
        return provenance.input_changes(recorded, wanted)

    def stale(self) -> Dict[str, List[str]]:
        """Complete checkpoints in ``output_dir`` (planned or not) trained on other inputs
        than this config's, with why; they are neither reused nor started from."""
        return {s: c for s in STAGE_ORDER if (c := self.changes(s))}

    def is_done(self, name: str) -> bool:
        """Complete and trained on :meth:`inputs` (or inputs are not compared)."""
        return self._complete(name) and not self.changes(name)

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
            return StageStart(lm_dir=lm_dir, inputs=self.inputs(name))
        if not self.is_done(row.head_from):
            head = stage(row.head_from).title
            raise PlanError(f"{row.title} needs the {head.replace(' ', '-')} checkpoint "
                            f"{ckpt.stage_dir(self.output_dir, row.head_from)}; run {head} "
                            "first")
        return StageStart(lm_dir=lm_dir, head_dir=ckpt.stage_dir(self.output_dir, row.head_from),
                          inputs=self.inputs(name))

    def check(self) -> None:
        """Before anything starts: every stage to run must find what it starts from, complete
        now or made by an earlier stage of this plan; with ``resume: strict`` no planned
        checkpoint may be stale.

        Raises
        ------
        PlanError naming the missing checkpoint (stage 3 without stage 2), or the stale stage
        and what changed (``resume: strict``).
        """
        if self.resume == "strict":
            for name in self.stages:
                if (why := self.changes(name)):
                    raise PlanError(f"resume: strict: {name} in {self.output_dir} was trained "
                                    f"on other inputs ({said_changes(why)}); use resume: true to run "
                                    "it again or a new output_dir")
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
        after a failure would skip a stage on a stale checkpoint) -- only folders that are
        checkpoints (their ``metrics.json`` is there), saying which before removing them.
        The run-folder check (:func:`lmgnn_dist.run.folder.check_run_dir`) has refused a
        folder with anything else under those names.
        """
        root = Path(self.output_dir)
        root.mkdir(parents=True, exist_ok=True)
        clean_stale_checkpoints(self.output_dir)
        if not self.resume:
            old = [n for s in self.stages for n in (s, *ckpt.progress_names(s))
                   if ckpt.is_complete(self.output_dir, n)]
            if old:
                print(f"[pipeline] resume: false: removing the earlier checkpoint(s) "
                      f"{', '.join(old)} in {self.output_dir}", flush=True)
            for name in old:
                shutil.rmtree(root / name)

def said_changes(changes: Sequence[str], most: int = 4) -> str:
    """The first ``most`` of ``changes`` joined for one line, and how many more."""
    return "; ".join(changes[:most]) + (f"; and {len(changes) - most} more"
                                        if len(changes) > most else "")


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
