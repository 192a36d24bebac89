"""Full-graph inference and embedding export of a trained stage: the job's processes.

Run it with the driver ``lmgnn-embed --config work/cora/run/config.yaml --checkpoint
work/cora/run/stage3 --out work/cora/embeddings`` (:mod:`lmgnn_dist.drivers.embed`), which
checks the checkpoint and then starts this module, ``python -m lmgnn_dist.jobs.embed ...``, in the
DGL servers and trainers of a job (:func:`launch.api.launch`). Started by hand, outside a job
(no ``DGL_IP_CONFIG``), it says so and exits 2: it never launches jobs itself.

1. The stage's LMs (per LM, ``<checkpoint>/lm*``, else stage 1's, else the configured model:
   :meth:`~lmgnn_dist.run.stage_checkpoint.StageCheckpoint.lm_sources`) encode
   every text node once without gradient into the LM-embedding cache, with a progress bar;
   each finished chunk is also saved under ``<out>/lm_chunks/<key>`` (:func:`chunk_store_of`:
   the LMs' weights, precision, sparse attention, partitions), so a rerun after a crash
   resumes from the chunks already encoded (same number of trainers), and an export of other
   weights into the same ``--out`` never reuses them. Text-less node types
   use the stage's learnable embeddings (``<checkpoint>/node_emb``).
2. The RGCN runs **layer by layer over all nodes** (DGL's layer-wise inference): layer ``l``
   of every node is computed from layer ``l-1`` of its full in-neighbourhood and stored in a
   ``DistTensor``, so each node's representation is computed once per layer instead of once
   per mini-batch that samples it.
3. Each trainer writes its ``node_split`` share: ``<out>/embeddings/<ntype>/part-<rank>.parquet``
   (``id``: the user's original id, ``emb``: fixed-size list of float32) and, for node
   classification, ``<out>/predictions/<ntype>/part-<rank>.parquet`` (``id``, ``pred``,
   ``prob``) of the target type. The LMs are saved with ``save_pretrained`` in ``<out>/lm*``
   (rank 0).

``--verify N`` also computes the GNN outputs of N nodes of the first LM-encoded type by
mini-batch inference with full neighbourhoods and prints the largest absolute difference to
the layer-wise result.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch


def chunk_store_of(out_dir: Path, weights_key: str, precision: str, sparse_attention: dict,
                   fingerprint: dict) -> Path:
    """``<out>/lm_chunks/<key>``: where an export keeps its finished LM chunks, ``key`` a
    digest of everything a chunk's numbers depend on -- the LMs' weights (and pooling:
    :meth:`~lmgnn_dist.model.joint.NodeLMs.weights_key`), their precision, the block-sparse
    attention settings and the partitions' tokens (:func:`~lmgnn_dist.run.provenance.
    partition_digest`). A rerun of the same export resumes from them; an export of another
    checkpoint, precision or partition set into the same ``--out`` never reuses them."""
    from ..run.provenance import digest, partition_digest

    key = digest({"weights": weights_key, "precision": precision,
                  "sparse_attention": sparse_attention,
                  "partitions": partition_digest(fingerprint)})
    return Path(out_dir) / "lm_chunks" / key


def export(env, out_dir: Path, h, head, mine: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """Write this trainer's share ``mine`` of embeddings (and target-type predictions) as
    Parquet."""
    import pyarrow as pa

    from partition.atomic import write_parquet_atomic

    g, rank = env.g, env.ctx.rank
    target = getattr(env.task, "target", None)  # node classification only
    counts = {}
    for nt, ids in mine.items():
        emb = h[nt][ids]
        orig = g.nodes[nt].data["orig_id"][ids].numpy()
        dim = emb.shape[1]
        emb_col = pa.FixedSizeListArray.from_arrays(pa.array(emb.numpy().reshape(-1)), dim)
        write_parquet_atomic(pa.table({"id": orig, "emb": emb_col}),
                             out_dir / "embeddings" / nt / f"part-{rank}.parquet")
        if nt == target:
            with torch.no_grad():
                prob = torch.softmax(head.decoder(emb), dim=1)
            write_parquet_atomic(pa.table({"id": orig, "pred": prob.argmax(1).numpy(),
                                           "prob": prob.max(1).values.numpy()}),
                                 out_dir / "predictions" / nt / f"part-{rank}.parquet")
        counts[nt] = len(ids)
    return counts


def verify(env, head, learnable, h, n: int) -> float:
    """Largest |layer-wise - mini-batch full-neighbourhood| GNN output over ``n`` nodes of the
    first LM-encoded type."""
    from ..data.dataloading import node_batches

    nt = next(iter(env.encoders.lm_of))
    ids = torch.arange(min(n, env.g.num_nodes(nt)))
    worst = 0.0
    head.eval()
    with torch.no_grad():
        for inp, seeds, blocks in node_batches(env.g, {nt: ids}, env.cfg.model.fanouts,
                                               len(ids), shuffle=False, full_neighbors=True):
            mb = head.encoder(blocks, env.features(learnable)(inp))[nt]
            lw = h[nt][seeds[nt]]
            worst = max(worst, float((mb - lw).abs().max()))
    return worst


def save_lm_atomic(lm, folder: Path, tokenizer: str) -> None:
    """``lm.save_pretrained`` (with ``tokenizer``'s files) into ``folder`` atomically: a temp
    folder beside it, renamed into place (replacing an older one). Raises OSError."""
    import shutil

    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    lm.save_pretrained(str(tmp), tokenizer_source=tokenizer)
    if folder.exists():
        os.rename(folder, old)
    os.rename(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def parse_args(argv: Optional[Sequence[str]] = None, prog: str = "lmgnn-embed"):
    """The export's command line, shared by the driver (``lmgnn-embed``) and this job module.
    Exits 2 (argparse) on bad arguments."""
    from ..config.cli import parser

    p = parser(prog, "Full-graph inference and embedding export of a trained stage "
               "(layer-wise RGCN over all nodes; the LM saved for plain transformers).")
    p.add_argument("--config", required=True, help="the run's config YAML")
    p.add_argument("--checkpoint", required=True,
                   help="a stage folder with gnn.pt (<run>/stage2, <run>/stage3, <run>/baseline)")
    p.add_argument("--out", required=True,
                   help="output folder (the export, its logs/ and ip-config; nothing else is "
                        "written)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--verify", type=int, default=0, metavar="N")
    p.add_argument("--verbose", action="store_true",
                   help="show every process's output on the console (always in <out>/logs/)")
    p.add_argument("overrides", nargs="*")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    """One process of the export job (a DGL server or a trainer). Exits 2 with one line when
    started outside a job; raises what the export raises (:func:`cli` turns it into the exit
    code)."""
    args = parse_args(argv, prog="python -m lmgnn_dist.jobs.embed")

    from ..dist_init import initialize, is_server

    if "DGL_IP_CONFIG" not in os.environ:
        print("error: python -m lmgnn_dist.jobs.embed runs inside a job's processes (no "
              "DGL_IP_CONFIG set); start the export with lmgnn-embed (same arguments)",
              file=sys.stderr)
        sys.exit(2)
    if is_server():
        initialize()
        return
    from ..config import load_config

    from partition.build import load_partition_meta

    cfg = load_config(args.config, args.overrides)
    meta = load_partition_meta(cfg.data.part_dir)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from ..monitor import setup_logging

    setup_logging()
    ctx = initialize()
    import dgl

    from ..data.dataloading import local_nodes
    from ..data.layerwise import layerwise_inference
    from ..data.node_inputs import lm_folder
    from ..dist_init import all_reduce
    from ..run.stage_checkpoint import StageCheckpoint
    from ..trainer import StageEnv
    from ..trainer.builders import build_learnable, build_lms, build_task_model

    ckpt = StageCheckpoint(Path(args.checkpoint))
    ckpt.check_complete()
    g = dgl.distributed.DistGraph(cfg.data.graph_name, part_config=meta["part_config"])
    env = StageEnv.create(cfg, ctx, g, meta)
    env.log("[embed] LMs from: " + ", ".join(
        f"{k}={v}" for k, v in ckpt.lm_sources(env.encoders.lm_paths).items()))
    lms = build_lms(env.encoders, cfg.model, ckpt.folder, env.device)
    out = Path(args.out)
    # resumable: finished chunks of the LM encode are kept in <out>/lm_chunks/<key> and reused
    import dataclasses

    store = chunk_store_of(out, lms.weights_key(), env.device.precision,
                           dataclasses.asdict(cfg.model.sparse_attention),
                           meta.get("fingerprint", {}))
    enc = env.fill_cache(lms, force=True, chunk_store=store)
    env.log(f"[embed] LM chunks: {enc['chunks_encoded']} encoded, "
            f"{enc['chunks_reused']} reused (rank 0)", console=True)
    head = build_task_model(cfg.model, env.task, g.canonical_etypes, lms.out_dim, cfg.seed)
    head.load_state_dict(ckpt.load_gnn_state())
    head.eval()
    learnable = build_learnable(g, env.encoders, lms.out_dim, "embed", cfg.model.embedding_lr)
    inputs = dict(env.cache.tables)
    if learnable is not None:
        learnable.load(ckpt.node_emb_dir, ctx.is_main)
        inputs.update({nt: e.weight for nt, e in learnable.emb.items()})
    mine = {nt: local_nodes(g, nt) for nt in g.ntypes}
    h = layerwise_inference(env, head.encoder, inputs, mine, args.batch_size)
    counts = export(env, out, h, head, mine)
    if args.verify:
        diff = all_reduce(torch.tensor([verify(env, head, learnable, h, args.verify)]),
                          torch.distributed.ReduceOp.MAX).item()
        env.log(f"[embed] verify: max |layer-wise - mini-batch| GNN output = {diff:.3e}",
                console=True)
    if ctx.is_main:
        for key, lm in lms.lms.items():
            save_lm_atomic(lm, out / lm_folder(key), env.encoders.tokenizer)
    g.barrier()
    env.log(f"[embed] encoded in {enc['seconds']:.1f}s; wrote {out}/embeddings and "
            f"{out}/predictions ({counts} rows on rank 0)", console=True)
    dgl.distributed.exit_client()


def cli() -> None:
    """``python -m lmgnn_dist.jobs.embed``: one job process (a job process's exit codes, see
    ``dist_init``); the ``lmgnn-embed`` command is :func:`lmgnn_dist.drivers.embed.cli`."""
    from lmgnn_dist.dist_init import run_and_exit

    run_and_exit(main, sys.argv[1:])


if __name__ == "__main__":
    cli()
