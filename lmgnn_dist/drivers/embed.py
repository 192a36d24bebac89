"""``lmgnn-embed``: the driver of an embedding export (the job itself is
:mod:`lmgnn_dist.jobs.embed`).

``lmgnn-embed --config <run>/config.yaml --checkpoint <run>/stage3 --out <folder>
[--batch-size B] [--verify N] [--verbose] [key=value ...]``

1. Loads the config (whose ``launch`` section must name the machines,
   :func:`~lmgnn_dist.drivers.pipeline.check_machines`) and the partition metadata, and
   opens the stage checkpoint *before any process starts* (:func:`open_checkpoint`): the stage folder must be a complete checkpoint,
   its ``gnn.pt`` must load and fit (keys and shapes) the task head the config builds, its
   LM folders must be readable, and with text-less node types ``node_emb/`` must hold their
   rows. Any failure: one line ``error: <path>: ...`` on stderr, exit 2, nothing started.
2. Launches ``python -m lmgnn_dist.jobs.embed ...`` in the DGL servers and trainers of a job
   (:func:`launch.api.launch` with :func:`lmgnn_dist.drivers.pipeline.launch_spec`): the processes'
   logs go to ``<out>/logs/`` and the debug ip-config to ``<out>/``; the job runs with
   ``output_dir=<out>``, so the export writes only under ``--out`` and the training run's
   folder is left as it was. Returns the job's exit status.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..run.stage_checkpoint import CheckpointError, StageCheckpoint, check_state_dict


@dataclass(frozen=True)
class GraphSchema:
    """Node types and canonical edge types of a partitioned graph, read from its DGL
    partition config: what a task's constructor and the GNN encoder need of the graph,
    without a ``DistGraph`` (so the driver can build the model before any process starts)."""

    ntypes: List[str]
    canonical_etypes: List[Tuple[str, str, str]]

    @classmethod
    def from_part_config(cls, path: str) -> "GraphSchema":
        """Raises CheckpointError naming ``path`` if it is missing or not a partition config."""
        try:
            conf = json.loads(Path(path).read_text())
            ntypes = sorted(conf.get("ntypes", {"_N": 0}).items(), key=lambda kv: kv[1])
            etypes = sorted(conf.get("etypes", {"_N:_E:_N": 0}).items(), key=lambda kv: kv[1])
            canonical = [tuple(e.split(":")) for e, _ in etypes]
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            raise CheckpointError(f"{path}: cannot read the partition config ({exc})") from None
        if any(len(c) != 3 for c in canonical):
            raise CheckpointError(f"{path}: 'etypes' are not canonical 'src:etype:dst' names")
        return cls([n for n, _ in ntypes], canonical)


def _hidden_size(source: str) -> int:
    """``hidden_size`` of the LM in ``source`` (folder or configured model)."""
    from transformers import AutoConfig

    from partition.tokenize import resolve_model_path

    try:
        return int(AutoConfig.from_pretrained(resolve_model_path(source)).hidden_size)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: not a readable LM folder "
                              f"({str(exc).strip().splitlines()[0]})") from None


def open_checkpoint(cfg, meta: dict, folder: Path) -> Tuple[StageCheckpoint, Dict[str, str]]:
    """Open and check the stage checkpoint ``folder`` against the run config ``cfg`` and the
    partitioner's metadata ``meta`` (:func:`~partition.build.load_partition_meta`); starts
    nothing, writes nothing. Returns the checkpoint and where each LM starts from (LM key ->
    folder or configured model, :meth:`~lmgnn_dist.run.stage_checkpoint.StageCheckpoint.
    lm_sources`).

    Raises
    ------
    CheckpointError naming the file or folder: missing / incomplete stage folder, ``gnn.pt``
    missing, corrupt or not fitting the model the config builds, an unreadable LM folder,
    missing learnable-embedding rows. ValueError / FileNotFoundError naming the config key
    when the config does not fit the graph (task, encoders, models).
    """
    from ..trainer.builders import NodeInputEncoders, build_task_model
    from ..tasks import make_task

    ck = StageCheckpoint(folder)
    ck.check_complete()
    state = ck.load_gnn_state()
    encoders = NodeInputEncoders.from_config(cfg.model, meta)
    sources = ck.lm_sources(encoders.lm_paths)
    dims = {key: _hidden_size(src) for key, src in sources.items()}
    schema = GraphSchema.from_part_config(meta["part_config"])
    task = make_task(cfg, schema, meta)
    in_dim = dims[next(iter(encoders.lm_of.values()))]  # NodeLMs.out_dim's rule
    head = build_task_model(cfg.model, task, schema.canonical_etypes, in_dim, cfg.seed)
    check_state_dict(ck.gnn_path, state, head)
    for nt in encoders.embedding_ntypes:
        if not any((ck.node_emb_dir / nt).glob("part-*.pt")):
            raise CheckpointError(f"{ck.node_emb_dir / nt}: no learnable embeddings saved for "
                                  f"the text-less node type {nt!r}")
    return ck, sources


def check_out(out: Path, ck: StageCheckpoint) -> Path:
    """``--out`` resolved; CheckpointError naming it if it is the run folder or inside the
    stage folder (the export would overwrite the run's logs or the checkpoint's LMs), or an
    existing file."""
    o, run, stage = out.resolve(), ck.run_dir.resolve(), ck.folder.resolve()
    if o == run or o == stage or stage in o.parents:
        raise CheckpointError(f"{out}: --out must not be the run folder or inside the stage "
                              f"checkpoint {ck.folder}; give a folder of its own")
    if o.exists() and not o.is_dir():
        raise CheckpointError(f"{out}: --out exists and is not a folder")
    return o


def job_command(args, out: Path) -> List[str]:
    """The command of every process of the export job (absolute paths; ``output_dir=<out>``
    after the user's overrides)."""
    return [sys.executable, "-m", "lmgnn_dist.jobs.embed",
            "--config", str(Path(args.config).resolve()),
            "--checkpoint", str(Path(args.checkpoint).resolve()), "--out", str(out),
            "--batch-size", str(args.batch_size), "--verify", str(args.verify),
            *args.overrides, f"output_dir={out}"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The ``lmgnn-embed`` command; returns the exit status (2 with one ``error:`` line for
    bad input, nothing started; else the export job's)."""
    from launch.api import launch

    from partition.build import load_partition_meta

    from ..config import load_config
    from ..jobs.embed import parse_args
    from .pipeline import check_machines, launch_spec

    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        check_machines(cfg)
        meta = load_partition_meta(cfg.data.part_dir)
        ck, sources = open_checkpoint(cfg, meta, Path(args.checkpoint))
        out = check_out(Path(args.out), ck)
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError, ConfigError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"[embed] {ck.folder}: LMs from " + ", ".join(f"{k}={v}" for k, v in sources.items()),
          flush=True)
    out.mkdir(parents=True, exist_ok=True)
    spec = launch_spec(cfg, meta["part_config"], workspace=str(out), verbose=args.verbose)
    return launch(spec, job_command(args, out))


def cli() -> None:
    """Console entry point ``lmgnn-embed``."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
