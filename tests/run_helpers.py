"""Helpers of the real-run tests (test_restart.py, test_ray_pipeline.py, the embed tests)."""
from __future__ import annotations

import hashlib
import os

import psutil


def tiny_config(root, tag_dir, bert_dir, **top) -> dict:
    """A run config for the tiny TAG + tiny BERT with small budgets."""
    cfg = {
        "seed": 0, "output_dir": str(root / "run"), "resume": True, "baseline": True,
        "eval_batch_size": 16, "encode_batch_size": 16,
        "data": {"tag_path": str(tag_dir), "part_dir": str(root / "parts"),
                 "graph_name": "tiny", "num_parts": 2, "max_seq_len": 16},
        "model": {"lm": str(bert_dir), "hidden_size": 16, "fanouts": [4, 4], "dropout": 0.0},
        "stage1": {"max_steps": 6, "batch_size": 8, "num_negatives": 4, "lm_lr": 1e-3},
        "stage2": {"epochs": 5, "batch_size": 8, "lr": 1e-2},
        "stage3": {"max_steps": 6, "batch_size": 4, "lm_train_nodes": 6, "lm_lr": 1e-4,
                   "gnn_lr": 1e-3},
        "launch": {"debug_local": 2},
    }
    cfg.update(top)
    return cfg


#: metric keys that measure the machine (time, memory) or name a folder, not the model
_NOT_NUMBERS = ("seconds", "peak_rss_mb_max_trainer", "peak_gpu_mem_mib", "lm")


def comparable(metrics):
    """A stage's metrics without wall times (``*_s``), memory and folder names: what two
    runs of one seed must reproduce bit for bit (losses, val/test metrics, histories, LM
    encodings, cache counters, best steps)."""
    if isinstance(metrics, dict):
        return {k: comparable(v) for k, v in metrics.items()
                if not k.endswith("_s") and k not in _NOT_NUMBERS}
    if isinstance(metrics, list):
        return [comparable(v) for v in metrics]
    return metrics


def held_out_acc(metrics: dict) -> float:
    """Accuracy over the val and test nodes together (weighted by their counts)."""
    n_val, n_test = (sum(metrics[f"{s}_support"].values()) for s in ("val", "test"))
    return (metrics["val_acc"] * n_val + metrics["test_acc"] * n_test) / (n_val + n_test)


def own_processes(marker: str):
    """Processes of this test's jobs: ``lmgnn_dist.jobs.train`` with ``marker`` (a tmp path) in the
    command line (the machine is shared: never touch another run's processes)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cl = p.info["cmdline"] or []
        if "lmgnn_dist.jobs.train" in cl and any(marker in c for c in cl):
            found.append(p)
    return found


def tree_hash(root) -> str:
    """sha256 over every file's relative path and bytes (and every folder's path) under root."""
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        h.update(os.path.relpath(dirpath, root).encode())
        for f in sorted(files):
            with open(os.path.join(dirpath, f), "rb") as fh:
                h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()
