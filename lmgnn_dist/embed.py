"""Full-graph inference and embedding export of a trained stage.

``python -m lmgnn_dist.embed --config work/cora/run/config.yaml --checkpoint
work/cora/run/stage3 --out work/cora/embeddings`` starts the job itself (DGL servers and
trainers as the config's ``launch`` section says, like the pipeline driver); under
``launch/run_dist.py`` it runs as one of the job's processes.

1. The stage's LM (``<checkpoint>/lm``, else stage 1's, else the configured model) encodes
   every node once without gradient into the LM-embedding cache, with a progress bar; each
   finished chunk is also saved under ``<out>/lm_chunks``, so a rerun after a crash resumes
   from the chunks already encoded (same number of trainers).
2. The RGCN runs **layer by layer over all nodes** (DGL's layer-wise inference): layer ``l``
   of every node is computed from layer ``l-1`` of its full in-neighbourhood and stored in a
   ``DistTensor``, so each node's representation is computed once per layer instead of once
   per mini-batch that samples it.
3. Each trainer writes its ``node_split`` share: ``<out>/embeddings/<ntype>/part-<rank>.parquet``
   (``id``: the user's original id, ``emb``: fixed-size list of float32) and, for the task's
   target type, ``<out>/predictions/<ntype>/part-<rank>.parquet`` (``id``, ``pred``, ``prob``).
   The LM is saved with ``save_pretrained`` in ``<out>/lm`` (rank 0).

``--verify N`` also computes the logits of N target nodes by mini-batch inference with full
neighbourhoods and prints the largest absolute difference to the layer-wise result.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch


def layerwise_rgcn(runner, head, mine: Dict[str, torch.Tensor], batch_size: int
                   ) -> Dict[str, "object"]:
    """Run ``head.gnn`` layer by layer over every node; returns ntype -> ``DistTensor`` of the
    last layer (float32 ``[N, hidden]``). Collective: each trainer computes its share ``mine``
    (ntype -> ids, :func:`~lmgnn_dist.dataloading.local_nodes`)."""
    import dgl

    from .dataloading import node_batches

    g = runner.g
    h = runner.table.tables
    for i, layer in enumerate(head.gnn.layers):
        out = {nt: dgl.distributed.DistTensor((g.num_nodes(nt), layer.self_loop.out_features),
                                              torch.float32, name=f"layerwise_{i}_{nt}",
                                              part_policy=g.get_node_partition_policy(nt),
                                              persistent=True)
               for nt in g.ntypes}
        for nt in g.ntypes:
            for inp, seeds, blocks in node_batches(g, {nt: mine[nt]}, [1], batch_size,
                                                   shuffle=False, full_neighbors=True):
                x = {t: h[t][ids] for t, ids in inp.items()}
                with torch.no_grad():
                    y = layer(blocks[0], x)
                out[nt][seeds[nt]] = y[nt]
        g.barrier()
        h = out
    return h


def export(runner, out_dir: Path, h, head, mine: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Write this trainer's share ``mine`` of embeddings (and target-type predictions) as
    Parquet."""
    import pyarrow as pa

    from partition.atomic import write_parquet_atomic

    g, rank = runner.g, runner.ctx.rank
    counts = {}
    for nt, ids in mine.items():
        emb = h[nt][ids]
        orig = g.nodes[nt].data["orig_id"][ids].numpy()
        dim = emb.shape[1]
        emb_col = pa.FixedSizeListArray.from_arrays(pa.array(emb.numpy().reshape(-1)), dim)
        write_parquet_atomic(pa.table({"id": orig, "emb": emb_col}),
                             out_dir / "embeddings" / nt / f"part-{rank}.parquet")
        if nt == runner.target:
            with torch.no_grad():
                prob = torch.softmax(head.classifier(emb), dim=1)
            write_parquet_atomic(pa.table({"id": orig, "pred": prob.argmax(1).numpy(),
                                           "prob": prob.max(1).values.numpy()}),
                                 out_dir / "predictions" / nt / f"part-{rank}.parquet")
        counts[nt] = len(ids)
    return counts


def verify(runner, head, h, n: int) -> float:
    """Largest |layer-wise - mini-batch full-neighbourhood| logit over ``n`` target nodes."""
    from .dataloading import node_batches

    nt = runner.target
    ids = torch.arange(min(n, runner.g.num_nodes(nt)))
    worst = 0.0
    head.eval()
    with torch.no_grad():
        for inp, seeds, blocks in node_batches(runner.g, {nt: ids}, runner.cfg.model.fanouts,
                                               len(ids), shuffle=False, full_neighbors=True):
            mb = head(blocks, runner.table.read(inp))
            lw = head.classifier(h[nt][seeds[nt]])
            worst = max(worst, float((mb - lw).abs().max()))
    return worst


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description="Full-graph inference and embedding export")
    p.add_argument("--config", required=True, help="the run's config YAML")
    p.add_argument("--checkpoint", required=True, help="a stage folder with gnn.pt (stage2/3)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--verify", type=int, default=0, metavar="N")
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)

    from .dist_init import initialize, is_server

    if is_server():
        initialize()
        return
    from .config import load_config

    from partition.build import load_partition_meta

    cfg = load_config(args.config, args.overrides)
    meta = load_partition_meta(cfg.data.part_dir)
    if "DGL_IP_CONFIG" not in os.environ:
        # started by hand: launch the job (servers + trainers) that runs this same command
        from .pipeline import launch_job

        cmd = [sys.executable, "-m", "lmgnn_dist.embed", *(argv if argv is not None else sys.argv[1:])]
        sys.exit(launch_job(cfg, meta["part_config"], cmd))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    ctx = initialize()
    import dgl

    from .dataloading import local_nodes
    from .stages import StageRunner

    ckpt = Path(args.checkpoint)
    if not (ckpt / "gnn.pt").exists():
        raise FileNotFoundError(f"{ckpt / 'gnn.pt'} not found: --checkpoint must be a stage-2 "
                                "or stage-3 folder")
    g = dgl.distributed.DistGraph(cfg.data.graph_name, part_config=meta["part_config"])
    runner = StageRunner(cfg, ctx, g, meta)
    lm_dir = next((d for d in (ckpt / "lm", ckpt.parent / "stage1" / "lm") if d.exists()), None)
    lm = runner.load_lm(str(lm_dir) if lm_dir else None)
    out = Path(args.out)
    # resumable: finished chunks of the LM encode are kept in <out>/lm_chunks and reused
    enc = runner.encode_all(lm, chunk_store=out / "lm_chunks")
    runner.log(f"[embed] LM chunks: {enc['chunks_encoded']} encoded, "
               f"{enc['chunks_reused']} reused (rank 0)")
    head = runner.new_head(lm.out_dim)
    head.load_state_dict(torch.load(ckpt / "gnn.pt"))
    head.eval()
    mine = {nt: local_nodes(g, nt) for nt in g.ntypes}
    h = layerwise_rgcn(runner, head, mine, args.batch_size)
    counts = export(runner, out, h, head, mine)
    if args.verify:
        diff = runner.all_reduce(torch.tensor([verify(runner, head, h, args.verify)]),
                                 torch.distributed.ReduceOp.MAX).item()
        runner.log(f"[embed] verify: max |layer-wise - mini-batch| logit = {diff:.3e}")
    if ctx.is_main:
        lm.save_pretrained(str(out / "lm"), tokenizer_source=cfg.model.lm)
    g.barrier()
    runner.log(f"[embed] encoded in {enc['seconds']:.1f}s; wrote {out}/embeddings and "
               f"{out}/predictions ({counts} rows on rank 0)")
    dgl.distributed.exit_client()


if __name__ == "__main__":
    main(sys.argv[1:])
