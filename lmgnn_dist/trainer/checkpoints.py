"""Stage checkpoints and mid-stage progress checkpoints, written by the trainers (collective).

- ``<output_dir>/<stage>/``: the finished stage (:func:`write_stage_checkpoint`): ``lm*/``
  (Hugging Face folders), ``gnn.pt`` (GNN encoder + decoder), ``node_emb/`` (learnable rows,
  one file per trainer), ``test_predictions.npz`` (node classification: every test node's
  prediction), ``metrics.json`` (last: its presence means complete).
- ``<output_dir>/<stage>.partial/``: progress after N optimizer steps or epochs
  (:class:`Progress`): module and optimizer states (rank 0; DDP keeps them equal) and, per
  trainer, its RNG states, counters and learnable rows. A restarted job continues from it.

Both are written atomically by rank 0 (:func:`lmgnn_dist.run.checkpoint.write_stage`): every
trainer first writes its share into a staging folder, which rank 0 moves into the temp folder.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist

from ..run import checkpoint as ckpt
from ..run import provenance
from ..data.node_inputs import lm_folder


def _move_contents(src: Path, dst: Path) -> None:
    """Move everything in ``src`` into ``dst`` and remove ``src`` (if it exists)."""
    if src.exists():
        for item in src.iterdir():
            shutil.move(str(item), str(dst / item.name))
        shutil.rmtree(src)


def _stage_rank_files(env, name: str, learnable, rank_state: Optional[dict],
                      rank_dir: str = "ranks") -> Path:
    """Collective: every trainer writes its share of a checkpoint -- its learnable-embedding
    rows (``node_emb/``) and ``rank_state`` (``<rank_dir>/rank-<r>.pt``) -- into a fresh
    staging folder ``<output_dir>/.<name>.staging``."""
    staging = Path(env.cfg.output_dir) / f".{name}.staging"
    if env.ctx.is_main and staging.exists():
        shutil.rmtree(staging)
    dist.barrier()
    if learnable is not None:
        learnable.save(staging / "node_emb", env.ctx.rank)
    if rank_state is not None:
        (staging / rank_dir).mkdir(parents=True, exist_ok=True)
        torch.save(rank_state, staging / rank_dir / f"rank-{env.ctx.rank}.pt")
    dist.barrier()
    return staging


def write_stage_checkpoint(env, name: str, metrics: dict, lms=None, head=None,
                           learnable=None, predictions: Optional[dict] = None,
                           inputs: Optional[dict] = None,
                           rank_files: Optional[Tuple[str, dict]] = None) -> None:
    """Write ``<output_dir>/<name>/`` (collective) and drop the stage's progress checkpoint,
    which is obsolete once the stage is complete. ``metrics`` gains ``precision``: the LMs'
    precision as resolved (``launch.precision=auto`` -> bf16 or fp32), ``pooling`` (with
    ``lms``; a stage that saves none records its own): LM key -> the resolved pooling
    (:meth:`~lmgnn_dist.model.joint.NodeLMs.pooling`), ``lora`` (LMs with LoRA adapters:
    :meth:`~lmgnn_dist.model.joint.NodeLMs.lora`), and ``inputs``: what
    the stage was trained on (:mod:`lmgnn_dist.run.provenance`; the run plan compares it on
    resume). ``predictions`` (rank 0's; name -> numpy array, e.g. the test split's
    ``node_id``/``pred``/``label``) go into ``test_predictions.npz`` inside the temp folder,
    so they appear with the rest. ``rank_files``: ``(folder, this trainer's dict)``, saved as
    ``<folder>/rank-<r>.pt`` (stage 1's out-of-fold embeddings, :mod:`.cross_fit`)."""
    metrics.setdefault("precision", env.device.precision)
    if lms is not None:
        metrics.setdefault("pooling", lms.pooling())
        lora = lms.lora()
        if lora:
            metrics.setdefault("lora", lora)
    if inputs is not None:
        metrics.setdefault("inputs", inputs)
    folder, mine = rank_files or ("ranks", None)
    staging = _stage_rank_files(env, name, learnable, mine, folder)
    if env.ctx.is_main:
        def write_files(tmp: Path) -> None:
            if lms is not None:
                for key, lm in lms.lms.items():
                    lm.save_pretrained(str(tmp / lm_folder(key)),
                                       tokenizer_source=env.encoders.tokenizer)
            if head is not None:
                torch.save(head.state_dict(), tmp / "gnn.pt")
            if predictions is not None:
                np.savez(tmp / ckpt.PREDICTIONS, **predictions)
            _move_contents(staging, tmp)
        ckpt.write_stage(env.cfg.output_dir, name, metrics, write_files)
        for partial in ckpt.progress_names(name):
            shutil.rmtree(ckpt.stage_dir(env.cfg.output_dir, partial), ignore_errors=True)
    dist.barrier()


def progress_due(done: int, total: int, every: int, steps_per_unit: int = 1) -> bool:
    """Whether to write a progress checkpoint after ``done`` of ``total`` steps (or epochs of
    ``steps_per_unit`` steps): the unit just finished crossed a multiple of ``every``
    optimizer steps (``checkpoint_every``; 0 = never), and the stage is not over."""
    return (every > 0 and done < total
            and done * steps_per_unit // every > (done - 1) * steps_per_unit // every)


class Progress:
    """The progress checkpoint of one stage, for one trainer (``unit``: ``step``/``epoch``).

    ``modules`` (name -> module) and ``opt`` are saved by rank 0; each trainer saves its
    generator ``gen``, torch's global RNG state, its ``rank_state`` and learnable rows.
    """

    def __init__(self, env, name: str, gen: torch.Generator, unit: str = "step",
                 inputs: Optional[dict] = None):
        self.env, self.name, self.gen, self.unit = env, name, gen, unit
        #: digest of what the stage trains on; a progress checkpoint of other inputs is
        #: not resumed (None: not compared)
        self.inputs = None if inputs is None else provenance.inputs_digest(inputs)

    def due(self, done: int, total: int, steps_per_unit: int = 1) -> bool:
        return progress_due(done, total, self.env.cfg.checkpoint_every, steps_per_unit)

    def save(self, done: int, modules: Dict[str, torch.nn.Module], opt, learnable,
             rank_state: dict) -> None:
        """Write ``<output_dir>/<name>.partial/`` atomically after ``done`` units
        (collective)."""
        env, name = self.env, f"{self.name}.partial"
        mine = dict(rank_state, rng=self.gen.get_state(), torch_rng=torch.get_rng_state())
        staging = _stage_rank_files(env, name, learnable, mine)
        if env.ctx.is_main:
            def write_files(tmp: Path) -> None:
                torch.save({"step": done, "world_size": env.ctx.world_size,
                            "modules": {k: m.state_dict() for k, m in modules.items()},
                            "optimizer": opt.state_dict()}, tmp / "progress.pt")
                _move_contents(staging, tmp)
            ckpt.write_stage(env.cfg.output_dir, name, {"step": done, "inputs": self.inputs},
                             write_files)
        dist.barrier()
        env.log(f"[{self.name}] progress checkpoint after {self.unit} {done}")

    def load(self, modules: Dict[str, torch.nn.Module], opt, learnable) -> dict:
        """Restore the last :meth:`save` (when ``resume``): module and optimizer states,
        learnable rows, and this trainer's RNGs and rank state (those only with the same
        number of trainers). Returns the rank state with ``step`` (units done), or ``{}``
        when there is nothing to resume."""
        env, out = self.env, self.env.cfg.output_dir
        if not (env.cfg.resume and ckpt.is_complete(out, f"{self.name}.partial")):
            return {}
        recorded = ckpt.load_metrics(out, f"{self.name}.partial").get("inputs")
        if self.inputs is not None and recorded != self.inputs:
            env.log(f"[{self.name}] its progress checkpoint was made on other inputs "
                    f"({recorded} != {self.inputs}): starting the stage afresh", console=True)
            return {}
        folder = ckpt.stage_dir(out, f"{self.name}.partial")
        saved = torch.load(folder / "progress.pt", map_location="cpu")
        for key, module in modules.items():
            module.load_state_dict(saved["modules"][key])
        opt.load_state_dict(saved["optimizer"])
        if learnable is not None:
            learnable.load(folder / "node_emb", env.ctx.is_main)
        mine = folder / "ranks" / f"rank-{env.ctx.rank}.pt"
        same_world = saved["world_size"] == env.ctx.world_size
        state = torch.load(mine, map_location="cpu") if same_world and mine.exists() else {}
        if "rng" in state:
            self.gen.set_state(state.pop("rng"))
            torch.set_rng_state(state.pop("torch_rng"))
        env.log(f"[{self.name}] resuming after {self.unit} {saved['step']} from its progress "
                "checkpoint")
        return dict(state, step=saved["step"])
