"""GraphStorm 0.5.1's side of :mod:`bench_graphstorm`: its virtual environment (``SETUP``,
``SHIM``), its gconstruct input and training config for the shared Cora work, the run with
its process tree's memory sampled, and its log parsed. Importable without GraphStorm."""
from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # launch.memory
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


def dgl_role(proc) -> str:
    """``trainer`` / ``server`` by a process's DGL_ROLE, else ``other``."""
    return {"client": "trainer", "server": "server"}.get(proc.environ().get("DGL_ROLE"),
                                                         "other")


def run_watched(cmd, log: Path, env=None, cwd=REPO) -> dict:
    """Run ``cmd`` (output to ``log``), sampling the RSS of its process tree every 0.5 s
    (:class:`launch.memory.TreeMemoryMonitor`); ``rc``, ``wall_s``, ``peak_mb`` (per role:
    ``trainer``/``server`` by DGL_ROLE, else ``other``: the largest single process) and
    ``peak_sum_mb`` (the tree's summed RSS)."""
    from launch.memory import TreeMemoryMonitor

    t0 = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        with TreeMemoryMonitor(proc.pid, role_of=dgl_role) as mon:
            proc.wait()
    return {"rc": proc.returncode, "wall_s": time.time() - t0,
            "peak_mb": {k: v / 2**20 for k, v in mon.peak_by_role.items()},
            "peak_sum_mb": mon.peak_bytes / 2**20}


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


def setup(venv: Path) -> None:
    for c in SETUP:
        c = c.format(py=sys.executable, venv=venv)
        print(f"$ {c}", flush=True)
        subprocess.run(c, shell=True, check=True)


