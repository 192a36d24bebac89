"""The stage table: every stage a run can have, in one place below everyone.

LM-GNN (Ioannidis et al., 2022) trains in stages; this project adds the frozen-LM baseline.
Each row says the stage's checkpoint name, its place in the run order (also part of each
stage's seed), what it starts from, and how results tables and pictures label it -- per
*variant*: what a stage's config made it do (``stage1.objective: task`` fine-tunes the LMs on
the labels instead of link prediction; ``stage3.mode: lm_only`` trains no graph; a stage 3 of
0 steps only re-encodes and evaluates; ``stage3.mode: glem`` alternates LM and GNN). A finished
stage records its variant in its metrics (``variant``), so a table never guesses it from
metric keys. Importable without DGL or torch.

Adding a stage: a row here, its trainer in :data:`lmgnn_dist.trainer.TRAINERS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Tuple


@dataclass(frozen=True)
class Labels:
    """How one variant of a stage is named: ``row`` in the per-stage results table,
    ``task_row`` in the several-task table (None: not shown there), ``short`` in pictures
    (``{gnn}``: the run's GNN encoder, filled in by :func:`labels_of`)."""

    row: str
    task_row: Optional[str]
    short: str


@dataclass(frozen=True)
class Stage:
    """One row of the stage table.

    Attributes
    ----------
    name : checkpoint folder and ``--stage`` value (``stage2``).
    number : ``k`` of ``cfg.stages`` (None: the baseline, enabled by ``cfg.baseline``).
    lms_from : the stage whose LMs this one starts from when its checkpoint is complete
        (else the configured models), or None: always the configured models.
    head_from : the stage whose GNN encoder + decoder this one starts from (required).
    labels : variant -> :class:`Labels`; ``"default"`` always present.
    sections : the stage config sections it reads (``stage3`` also reads ``stage2`` for its
        GNN re-fit); part of what it was trained on (:mod:`lmgnn_dist.run.provenance`).
    """

    name: str
    number: Optional[int]
    lms_from: Optional[str]
    head_from: Optional[str]
    labels: Dict[str, Labels] = field(default_factory=dict)
    sections: Tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """``stage 2`` (or ``baseline``) for messages."""
        return self.name if self.number is None else f"stage {self.number}"

    def label(self, variant: Optional[str] = None) -> Labels:
        """The labels of ``variant`` (the default ones for None or an unknown variant)."""
        return self.labels.get(variant or "default", self.labels["default"])


@dataclass(frozen=True)
class StageStart:
    """What a stage starts from.

    Attributes
    ----------
    lm_dir : checkpoint folder whose ``lm*/`` hold the LMs to start from (stage 1's), or
        None for the configured models (``model.lm`` / ``model.encoders``).
    head_dir : the checkpoint of the stage's ``head_from`` (stage 3: stage 2's ``gnn.pt``,
        ``node_emb/``), or None.
    inputs : what the stage trains on (:func:`lmgnn_dist.run.provenance.stage_inputs`),
        recorded in its checkpoints; None when the caller does not track them.
    """

    lm_dir: Optional[Path] = None
    head_dir: Optional[Path] = None
    inputs: Optional[dict] = None


#: the stages in run order
STAGES: Tuple[Stage, ...] = (
    Stage("baseline", None, None, None, {
        "default": Labels("frozen LM + {gnn} (baseline)", "frozen LM + {gnn}",
                          "baseline (frozen LM)")}, ("stage2",)),
    Stage("stage1", 1, None, None, {
        "default": Labels("1: graph-aware LM pre-fine-tune", None, "stage 1"),
        "task": Labels("1: LM fine-tune on the task (MLP)", None, "stage 1 (LM only)")},
        ("stage1",)),
    Stage("stage2", 2, "stage1", None, {
        "default": Labels("2: GNN warm-start (LM frozen)", "stage 2 (warm-start)",
                          "stage 2 (warm-start)")}, ("stage2",)),
    Stage("stage3", 3, "stage1", "stage2", {
        "default": Labels("3: joint LM+GNN fine-tune", "after stage 3 (joint)",
                          "stage 3 (joint)"),
        "lm_only": Labels("3: LM-only fine-tune (no graph)", "after stage 3 (LM only)",
                          "stage 3 (LM only)"),
        "glem": Labels("3: GLEM rounds (LM and GNN on each other's pseudo-labels)",
                       "after stage 3 (GLEM)", "stage 3 (GLEM)"),
        "eval_only": Labels("3: re-encode + evaluate (0 steps)", "after stage 3 (joint)",
                            "stage 3 (joint)")}, ("stage3", "stage2")),
)
#: stage name -> row
BY_NAME: Dict[str, Stage] = {s.name: s for s in STAGES}
#: every stage name, in run order
STAGE_ORDER: Tuple[str, ...] = tuple(BY_NAME)


def stage(name: str) -> Stage:
    """The row of ``name``; ValueError naming the known stages otherwise."""
    if name not in BY_NAME:
        raise ValueError(f"unknown stage {name!r}; stages: {list(STAGE_ORDER)}")
    return BY_NAME[name]


def stage_of_number(k: int) -> Stage:
    """The row of ``cfg.stages`` entry ``k``."""
    return next(s for s in STAGES if s.number == k)


def variant_of(name: str, cfg) -> str:
    """The variant stage ``name`` runs under config ``cfg`` (a ``RunConfig``), recorded in
    its metrics as ``variant``."""
    if name == "stage1" and cfg.stage1.objective == "task":
        return "task"
    if name == "stage3" and cfg.stage3.mode in ("lm_only", "glem"):
        return cfg.stage3.mode
    return "default"


def labels_of(name: str, metrics: dict, gnn: str = "rgcn") -> Labels:
    """The labels of a finished stage from its metrics (``variant``; a stage 3 of 0 steps is
    ``eval_only``), naming the run's GNN encoder (``model.gnn``) where a label does."""
    variant = metrics.get("variant")
    if name == "stage3" and metrics.get("steps") == 0 and variant != "lm_only":
        variant = "eval_only"
    lab = stage(name).label(variant)
    fill = (lambda text: text.format(gnn=gnn.upper()) if text is not None else None)
    return Labels(fill(lab.row), fill(lab.task_row), fill(lab.short))
