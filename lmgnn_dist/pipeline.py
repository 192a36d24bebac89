"""Driver of a whole run: partition (if needed) -> launch the stages -> print the results table.

``python -m lmgnn_dist.pipeline --config examples/cora/pipeline.yaml [section.key=value ...]``

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
from typing import Dict, List, Optional, Sequence

from .config import ConfigError, RunConfig, dump_config, load_config

ROWS = [("baseline", "frozen LM + RGCN (baseline)"), ("stage1", "1: graph-aware LM pre-fine-tune"),
        ("stage2", "2: GNN warm-start (LM frozen)"), ("stage3", "3: joint LM+GNN fine-tune")]


def ensure_partitions(cfg: RunConfig) -> dict:
    """Partition ``cfg.data.tag_path`` unless ``cfg.data.part_dir`` already matches the options."""
    from partition.build import META_FILE, PartitionOptions, load_partition_meta, partition_tag

    d = cfg.data
    opts = PartitionOptions(num_parts=d.num_parts, method=d.part_method,
                            num_trainers_per_machine=d.num_trainers_per_machine,
                            model=cfg.model.lm, max_seq_len=d.max_seq_len, graph_name=d.graph_name)
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


def format_table(results: Dict[str, dict]) -> str:
    """The per-stage table printed at the end of a run."""
    head = f"{'stage':34s} {'val acc':>8s} {'test acc':>8s} {'time (s)':>9s} {'peak RSS/trainer':>17s}"
    lines = [head, "-" * len(head)]
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            continue
        val = f"{r['val_acc']:.4f}" if "val_acc" in r else "-"
        test = f"{r['test_acc']:.4f}" if "test_acc" in r else "-"
        extra = (f"   (LP loss {r['loss_first']:.3f} -> {r['loss_last']:.3f})"
                 if key == "stage1" else "")
        lines.append(f"{label:34s} {val:>8s} {test:>8s} {r['seconds']:9.1f} "
                     f"{r['peak_rss_mb_max_trainer']:13.0f} MiB{extra}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Partition, launch and report an LM-GNN run.")
    p.add_argument("--config", required=True, help="run config YAML")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.time()
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    resolved = str(Path(cfg.output_dir) / "config.yaml")
    dump_config(cfg, resolved)
    try:
        meta = ensure_partitions(cfg)
    except (ValueError, FileNotFoundError) as exc:  # TAGFormatError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with TreeMemoryMonitor(os.getpid()) as mem:
        rc = launch_stages(cfg, resolved, meta["part_config"])
    if rc != 0:
        print(f"[pipeline] the distributed job failed (exit code {rc})", file=sys.stderr)
        return rc
    res_path = Path(cfg.output_dir) / "results.json"
    summary = json.loads(res_path.read_text())
    summary["wall_s"] = time.time() - t0
    summary["peak_rss_job_mb"] = mem.peak_bytes / 2**20
    from .checkpoint import write_json_atomic

    write_json_atomic(str(res_path), summary)
    print("\n" + format_table(summary["stages"]))
    print(f"\ntotal wall time {summary['wall_s']:.1f}s; peak memory of the whole job (servers + "
          f"trainers + driver, summed RSS) {summary['peak_rss_job_mb']:.0f} MiB")
    print(f"results: {res_path}; checkpoints: {cfg.output_dir}/<stage>/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
