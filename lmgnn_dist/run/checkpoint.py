"""Per-stage checkpoints, written atomically (temp folder, then rename).

A stage checkpoint is a folder ``<output_dir>/stage<N>/`` with ``metrics.json`` (written
last inside the temp folder, so its presence means the checkpoint is complete), ``gnn.pt``
(RGCN + decoder state dicts) when the stage trained a GNN, and ``lm/`` (a Hugging Face
folder: ``AutoModel.from_pretrained`` loads it) when the stage changed the LM.

A node-classification stage also holds ``test_predictions.npz`` (:data:`PREDICTIONS`), the
final evaluation of its kept model on every test node, gathered over the trainers: int64
arrays ``node_id`` (the TAG's ids, ``orig_id``, ascending: runs of one split align row by
row), ``pred`` and ``label`` (class indices), one row per test node; its accuracy is the
stage's ``test_acc``. ``metrics.json``'s ``code`` names the code that wrote the stage
(:func:`~.code_version.code_version`: commit and modified tracked files).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Optional

from partition.atomic import write_json_atomic

__all__ = ["write_stage", "is_complete", "load_metrics", "stage_dir", "write_json_atomic"]

METRICS = "metrics.json"
#: the per-node test predictions of a node-classification stage (module docstring)
PREDICTIONS = "test_predictions.npz"


def progress_names(stage: str) -> list:
    """The progress-checkpoint folders a stage may write: its own (``<stage>.partial``) and
    stage 3's GNN re-fit's (``<stage>_refit.partial``)."""
    return [f"{stage}.partial", f"{stage}_refit.partial"]


def stage_dir(output_dir: str, stage: str) -> Path:
    return Path(output_dir) / stage


def is_complete(output_dir: str, stage: str) -> bool:
    return (stage_dir(output_dir, stage) / METRICS).exists()


def load_metrics(output_dir: str, stage: str) -> dict:
    return json.loads((stage_dir(output_dir, stage) / METRICS).read_text())


def write_stage(output_dir: str, stage: str, metrics: dict,
                write_files: Optional[Callable[[Path], None]] = None) -> Path:
    """Write a stage checkpoint atomically.

    ``write_files(tmp_dir)`` writes the model files into the temp folder; then ``metrics.json``
    is written and the folder renamed to ``<output_dir>/<stage>`` (replacing an older one).
    """
    final = stage_dir(output_dir, stage)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{stage}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if write_files is not None:
            write_files(tmp)
        (tmp / METRICS).write_text(json.dumps(metrics, indent=2))
        if final.exists():
            old = final.parent / f".{stage}.old-{os.getpid()}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old)
        else:
            os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final
