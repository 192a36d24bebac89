"""Entry point of every process of a job: ``python -m lmgnn_dist.train --config run.yaml [k=v ...]``.

Started by ``launch/run_dist.py``: in a server process (``DGL_ROLE=server``) it serves its
partition until the trainers finish; in a trainer it opens the ``DistGraph`` and runs the
configured stages (:class:`lmgnn_dist.stages.StageRunner`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="LM-GNN trainer / DGL server process")
    p.add_argument("--config", required=True, help="run config YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage3.max_steps=10")
    args = p.parse_args(argv)

    from .dist_init import initialize, is_server

    if is_server():
        initialize()  # serves until every trainer is done, then exits the process
        return
    from .config import load_config

    from .config import ConfigError

    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ctx = initialize()
    import dgl

    from partition.build import load_partition_meta

    from .stages import StageRunner, dumps_short

    meta = load_partition_meta(cfg.data.part_dir)
    g = dgl.distributed.DistGraph(cfg.data.graph_name, part_config=meta["part_config"])
    if ctx.is_main:
        print(f"[trainer] {ctx.world_size} trainers on {g.get_partition_book().num_partitions()} "
              f"machines; graph {cfg.data.graph_name}: "
              + ", ".join(f"{nt}={g.num_nodes(nt)}" for nt in g.ntypes), flush=True)
    try:
        runner = StageRunner(cfg, ctx, g, meta)
    except (ValueError, FileNotFoundError) as exc:  # the config does not fit the graph
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)  # bad input: the drivers do not retry exit code 2
    results = runner.run()
    if ctx.is_main:
        print("[trainer] results " + dumps_short(results), flush=True)
    dgl.distributed.exit_client()


if __name__ == "__main__":
    from lmgnn_dist.dist_init import run_and_exit

    run_and_exit(main, sys.argv[1:])
