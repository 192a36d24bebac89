"""Entry point of every process of a job:
``python -m lmgnn_dist.jobs.train --config run.yaml [--stage NAME ...] [--resume] [k=v ...]``.

Started by ``launch/run_dist.py`` (or a driver's Ray actors): in a server process
(``DGL_ROLE=server``) it serves its partition until the trainers finish; in a trainer it
opens the ``DistGraph`` and, following the run plan (:class:`~lmgnn_dist.run.runplan.RunPlan`),
fits each stage still to run with its trainer (:func:`lmgnn_dist.trainer.trainer_of`); each
writes its checkpoint ``<output_dir>/<stage>/``. The drivers write ``results.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from ..stages import STAGE_ORDER


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="LM-GNN trainer / DGL server process")
    p.add_argument("--config", required=True, help="run config YAML")
    p.add_argument("--stage", action="append", choices=STAGE_ORDER, default=[],
                   help="run only this stage of the plan (repeatable; default: all of them)")
    p.add_argument("--resume", action="store_true",
                   help="skip complete stages and continue from progress checkpoints "
                        "(what the drivers use; otherwise the config's 'resume')")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage3.max_steps=10")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    from ..dist_init import initialize, is_server

    if is_server():
        initialize()  # serves until every trainer is done, then exits the process
        return
    from ..config import ConfigError, load_config
    from ..monitor import log, setup_logging
    from ..run.runplan import PlanError, RunPlan

    setup_logging()

    from partition.build import load_partition_meta

    try:
        cfg = load_config(args.config, args.overrides)
        cfg.resume = cfg.resume or args.resume
        meta = load_partition_meta(cfg.data.part_dir)
        plan = RunPlan.from_config(cfg, only=args.stage, fingerprint=meta.get("fingerprint", {}))
        plan.check()
    except (ConfigError, PlanError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ctx = initialize()
    import dgl

    from ..trainer import StageEnv, trainer_of

    g = dgl.distributed.DistGraph(cfg.data.graph_name, part_config=meta["part_config"])
    if ctx.is_main:
        log(f"[trainer] {ctx.world_size} trainers on {g.get_partition_book().num_partitions()} "
            f"machines; graph {cfg.data.graph_name}: "
            + ", ".join(f"{nt}={g.num_nodes(nt)}" for nt in g.ntypes))
    try:
        env = StageEnv.create(cfg, ctx, g, meta)
    except (ValueError, FileNotFoundError) as exc:  # the config does not fit the graph
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)  # bad input: the drivers do not retry exit code 2
    ran = []
    for name in plan.to_run():
        # decided when the stage starts: stage 2 starts from a stage 1 run by this job
        trainer_of(cfg, name)(env, name, plan.start_of(name)).fit()
        ran.append(name)
    if ctx.is_main:
        log(f"[trainer] stages run: {', '.join(ran) or 'none (all complete)'}")
    dgl.distributed.exit_client()


if __name__ == "__main__":
    from lmgnn_dist.dist_init import run_and_exit

    run_and_exit(main, sys.argv[1:])
