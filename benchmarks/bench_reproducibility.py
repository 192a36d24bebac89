"""Do two runs of one seed give the same numbers? Runs a config ``--runs`` times on the same
partitions (each in its own run folder) and prints, per stage, whether the metrics that
describe the model (losses, validation history, val/test metrics, LM-encoding and cache
counters; not times or memory) are identical, and the largest difference of val/test metrics.

    python benchmarks/bench_reproducibility.py --config examples/cora/pipeline.yaml \\
        --work /tmp/repro stages=[2] stage2.epochs=3 data.max_seq_len=32

Exit status 0 when every run matches the first, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

#: metric keys that measure the machine (time, memory) or name a folder
SKIP = ("seconds", "peak_rss_mb_max_trainer", "peak_gpu_mem_mib", "lm")


def comparable(m):
    if isinstance(m, dict):
        return {k: comparable(v) for k, v in m.items() if not k.endswith("_s") and k not in SKIP}
    if isinstance(m, list):
        return [comparable(v) for v in m]
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--work", required=True, help="folder for the partitions and run folders")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    work = Path(args.work)
    results = []
    for i in range(args.runs):
        out = work / f"run{i}"
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
                               args.config, f"output_dir={out}", f"data.part_dir={work / 'parts'}",
                               "resume=false", *args.overrides], capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:])
            return 2
        results.append(json.loads((out / "results.json").read_text())["stages"])
        print(f"run {i}: {time.time() - t0:.0f}s", flush=True)
    same = True
    for stage, first in results[0].items():
        for i, other in enumerate(results[1:], 1):
            eq = comparable(first) == comparable(other[stage])
            same &= eq
            diffs = {k: abs(first[k] - other[stage][k]) for k in first
                     if k.startswith(("val_", "test_")) and isinstance(first[k], float)}
            print(f"{stage}: run {i} {'identical' if eq else 'DIFFERS'}; largest |val/test "
                  f"difference| {max(diffs.values(), default=0.0):.4f}; "
                  + ", ".join(f"{k} {first[k]:.4f} vs {other[stage][k]:.4f}"
                              for k in ("val_acc", "test_acc") if k in first))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
