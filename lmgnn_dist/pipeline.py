"""Driver of a whole run: partition (if needed) -> launch the stages -> print the results table.

``python -m lmgnn_dist.pipeline --config examples/cora/pipeline.yaml [section.key=value ...]``

Several ``--config`` files (e.g. one per task) run one after the other; ``--summary FILE``
then writes their combined task table (:func:`format_task_table`) as JSON.

1. Tokenises and partitions ``data.tag_path`` into ``data.part_dir`` unless a partition made
   with the same options is already there.
2. Starts the DGL servers and trainers with ``launch/run_dist.py`` (``launch.debug_local``
   loopback machines, or the machines of ``launch.ip_config``); every trainer runs
   ``python -m lmgnn_dist.train`` on the resolved config.
3. Prints validation/test accuracy, wall time and peak memory of each stage from
   ``<output_dir>/results.json`` and adds the job's wall time and peak memory to it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .config import ConfigError, RunConfig, dump_config, load_config

ROWS = [("baseline", "frozen LM + RGCN (baseline)"), ("stage1", "1: graph-aware LM pre-fine-tune"),
        ("stage2", "2: GNN warm-start (LM frozen)"), ("stage3", "3: joint LM+GNN fine-tune")]


def ensure_partitions(cfg: RunConfig) -> dict:
    """Partition ``cfg.data.tag_path`` unless ``cfg.data.part_dir`` already matches the options."""
    from partition.build import META_FILE, PartitionOptions, load_partition_meta, partition_tag

    d = cfg.data
    lp = cfg.task.kind == "link_prediction"
    opts = PartitionOptions(num_parts=d.num_parts, method=d.part_method,
                            num_trainers_per_machine=d.num_trainers_per_machine,
                            model=cfg.model.lm, max_seq_len=d.max_seq_len, graph_name=d.graph_name,
                            holdout_etypes=[cfg.task.target_etype] if lp else [],
                            eval_negatives=cfg.task.eval_negatives, holdout_seed=cfg.seed)
    if (Path(d.part_dir) / META_FILE).exists():
        meta = load_partition_meta(d.part_dir)
        same = (meta["options"] == opts.__dict__
                and meta["tag"] == str(Path(d.tag_path).resolve()))
        if same:
            print(f"[pipeline] using existing partitions in {d.part_dir}", flush=True)
            return meta
    print(f"[pipeline] partitioning {d.tag_path} into {d.num_parts} parts ({d.part_method}) "
          f"-> {d.part_dir}", flush=True)
    t0 = time.time()
    partition_tag(d.tag_path, d.part_dir, opts)
    print(f"[pipeline] partitioned in {time.time() - t0:.1f}s", flush=True)
    return load_partition_meta(d.part_dir)


class TreeMemoryMonitor:
    """Samples the summed RSS of a process and all its descendants (``psutil``) every ``period_s``."""

    def __init__(self, pid: int, period_s: float = 0.5):
        self.pid, self.period_s, self.peak_bytes = pid, period_s, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        root = psutil.Process(self.pid)
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                procs = []
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.period_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def launch_job(cfg: RunConfig, part_config: str, command: List[str]) -> int:
    """Run ``command`` in every trainer (and DGL servers) with ``launch/run_dist.py`` as
    ``cfg.launch`` says (loopback debug machines or an ip-config); returns its exit code."""
    from launch import run_dist

    l = cfg.launch
    argv: List[str] = (["--debug-local", str(l.debug_local)] if l.debug_local > 0
                       else ["--ip-config", l.ip_config])
    argv += ["--part-config", part_config, "--workspace", cfg.output_dir,
             "--num-trainers", str(l.num_trainers), "--num-servers", str(l.num_servers),
             "--omp-threads", str(l.omp_threads), "--", *command]
    return run_dist.main(argv)


def launch_stages(cfg: RunConfig, config_path: str, part_config: str) -> int:
    """Run the stages (``python -m lmgnn_dist.train``) on the job's trainers."""
    return launch_job(cfg, part_config,
                      [sys.executable, "-m", "lmgnn_dist.train", "--config", config_path])


def format_table(results: Dict[str, dict], metric: str = "acc") -> str:
    """The per-stage table printed at the end of a run: val/test ``metric`` (the task's
    primary one), wall time and peak memory per stage."""
    name = metric.replace("_", "-")
    head = (f"{'stage':34s} {'val ' + name:>12s} {'test ' + name:>12s} {'time (s)':>9s} "
            f"{'peak RSS/trainer':>17s}")
    lines = [head, "-" * len(head)]
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            continue
        val = f"{r['val_' + metric]:.4f}" if "val_" + metric in r else "-"
        test = f"{r['test_' + metric]:.4f}" if "test_" + metric in r else "-"
        extra = (f"   (LP loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})"
                 if key == "stage1" else "")
        lines.append(f"{label:34s} {val:>12s} {test:>12s} {r['seconds']:9.1f} "
                     f"{r['peak_rss_mb_max_trainer']:13.0f} MiB{extra}")
    return "\n".join(lines)


TASK_ROWS = [("baseline", "frozen LM + RGCN"), ("stage2", "stage 2 (warm-start)"),
             ("stage3", "after stage 3 (joint)")]


def task_rows(summary: dict) -> List[dict]:
    """One row per (stage of :data:`TASK_ROWS`) of a run's ``results.json``: the task, its
    target, and every scalar val/test metric plus per-class F1 where the task has classes."""
    cfg, rows = summary["config"]["task"], []
    target = cfg["target_ntype"] if summary["task"] == "node_classification" else cfg["target_etype"]
    for key, label in TASK_ROWS:
        r = summary["stages"].get(key)
        if r is None:
            continue
        row = {"task": summary["task"], "target": target, "model": label, "stage": key}
        row.update({k: v for k, v in r.items() if k.startswith(("val_", "test_"))})
        rows.append(row)
    return rows


def format_task_table(rows: List[dict]) -> str:
    """The table of several tasks: test (val) metrics per task and model."""
    lines = []
    for row in rows:
        cells = []
        for k, v in row.items():
            if k.startswith("test_") and isinstance(v, float):
                m = k[len("test_"):]
                cells.append(f"{m} {v:.4f} ({row['val_' + m]:.4f})")
            elif k == "test_f1_per_class":
                cells += [f"F1[{c}] {f:.4f} ({row['val_f1_per_class'][c]:.4f})"
                          for c, f in v.items()]
        lines.append(f"{row['task']:20s} {row['target']:30s} {row['model']:22s} " + "  ".join(cells))
    head = f"{'task':20s} {'target':30s} {'model':22s} metrics on test (val)"
    return "\n".join([head, "-" * (len(head) + 40)] + lines)


def check_model_paths(cfg: RunConfig) -> None:
    """Every configured LM (``model.lm`` and per-type ``model.encoders`` paths) must resolve,
    and a type's own LM must use the vocabulary of ``model.lm``'s tokenizer (the partitions
    store token ids of that one). Checked before anything starts.

    Raises FileNotFoundError / ConfigError naming the config key.
    """
    from partition.tokenize import load_tokenizer, resolve_model_path

    own = [(f"model.encoders.{nt}", p) for nt, p in cfg.model.encoders.items()
           if p not in ("shared", "embedding")]
    for key, path in [("model.lm", cfg.model.lm)] + own:
        try:
            resolve_model_path(path)
        except (FileNotFoundError, ImportError) as exc:
            raise FileNotFoundError(f"{key}: {exc}") from None
    if own:
        vocab = load_tokenizer(cfg.model.lm).get_vocab()
        for key, path in own:
            if load_tokenizer(path).get_vocab() != vocab:
                raise ConfigError(f"{key}={path!r} has another vocabulary than model.lm="
                                  f"{cfg.model.lm!r}, whose tokenizer made the partitions' token "
                                  "ids; every LM of a run must share it")


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Partition, launch and report an LM-GNN run.")
    p.add_argument("--config", required=True, action="append",
                   help="run config YAML (repeat to run several, e.g. one per task)")
    p.add_argument("--summary", help="with several configs: write their task table here (JSON)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    rows: List[dict] = []
    for path in args.config:
        rc, results = run_one(path, args.overrides)
        if rc != 0:
            return rc
        rows += task_rows(results)
    if len(args.config) > 1 or args.summary:
        print("\n" + format_task_table(rows))
        if args.summary:
            from .checkpoint import write_json_atomic

            write_json_atomic(args.summary, {"configs": args.config, "rows": rows})
            print(f"task table: {args.summary}")
    return 0


def run_one(config_path: str, overrides: Sequence[str]) -> Tuple[int, Optional[dict]]:
    """Partition, launch and report one run config; returns the exit code (2: bad input) and
    the run's ``results.json`` content (None on failure)."""
    try:
        cfg = load_config(config_path, overrides)
        check_model_paths(cfg)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    t0 = time.time()
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    resolved = str(Path(cfg.output_dir) / "config.yaml")
    dump_config(cfg, resolved)
    try:
        meta = ensure_partitions(cfg)
    except (ValueError, FileNotFoundError) as exc:  # TAGFormatError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    with TreeMemoryMonitor(os.getpid()) as mem:
        rc = launch_stages(cfg, resolved, meta["part_config"])
    if rc != 0:
        print(f"[pipeline] the distributed job failed (exit code {rc})", file=sys.stderr)
        return rc, None
    res_path = Path(cfg.output_dir) / "results.json"
    summary = json.loads(res_path.read_text())
    summary["wall_s"] = time.time() - t0
    summary["peak_rss_job_mb"] = mem.peak_bytes / 2**20
    from .checkpoint import write_json_atomic

    write_json_atomic(str(res_path), summary)
    print("\n" + format_table(summary["stages"], summary["primary"]))
    print(f"\ntotal wall time {summary['wall_s']:.1f}s; peak memory of the whole job (servers + "
          f"trainers + driver, summed RSS) {summary['peak_rss_job_mb']:.0f} MiB")
    print(f"results: {res_path}; checkpoints: {cfg.output_dir}/<stage>/")
    return 0, summary


if __name__ == "__main__":
    sys.exit(main())
