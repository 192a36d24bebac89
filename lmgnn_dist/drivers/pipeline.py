"""Driver of a whole run: prepare -> one distributed job for the stages -> results table.

``lmgnn-run --config examples/cora/pipeline.yaml [--verbose] [section.key=value ...]``
(or ``python -m lmgnn_dist.drivers.pipeline ...``)

Several ``--config`` files (e.g. one per task) run one after the other; ``--summary FILE``
then writes their combined task table (:func:`~lmgnn_dist.drivers.results.format_task_table`) as JSON.

1. :func:`check_machines` (the config names the job's machines), then
   :func:`~lmgnn_dist.drivers.prepare.prepare_run`: checks the models and the run plan, writes
   ``<output_dir>/config.yaml``, tokenises and partitions ``data.tag_path`` into
   ``data.part_dir`` unless a partition made with the same options is already there.
2. Starts the DGL servers and trainers with :func:`launch.api.launch` (the spec of
   :func:`launch_spec`: ``launch.debug_local`` loopback machines, or the machines of
   ``launch.ip_config``); every process runs the run plan's
   :meth:`~lmgnn_dist.run.runplan.RunPlan.train_command`.
3. Writes ``<output_dir>/results.json`` from the stage checkpoints, with the job's wall time,
   peak memory and number of restarts, and prints the per-stage table
   (:mod:`lmgnn_dist.drivers.results`).

Fault tolerance: if the distributed job fails (a process dies or exits non-zero) it is started
again, every process afresh (new ports, new shared-memory namespace), at most
``launch.max_restarts`` times (:func:`launch.watch.run_with_restarts`). Trainers always run
with ``--resume``, so stages whose checkpoint is complete are not run again; the failed stage
continues after its last progress checkpoint (``checkpoint_every``), or starts from its
beginning without one. Exit code 2 (bad input) is never retried.
"""
from __future__ import annotations

import os
import sys
import time
from typing import List, Optional, Sequence, Tuple

from launch.api import LaunchSpec, Machines, SSHSettings, launch
from launch.memory import TreeMemoryMonitor
from launch.watch import run_with_restarts

from ..config import ConfigError, RunConfig, load_config
from .results import format_task_table, task_rows, write_results
from ..run.runplan import clean_stale_checkpoints


def launch_spec(cfg: RunConfig, part_config: str, workspace: Optional[str] = None,
                verbose: bool = False) -> LaunchSpec:
    """The :class:`~launch.api.LaunchSpec` of ``cfg.launch`` (loopback debug machines when
    ``launch.debug_local > 0``, else the machines of ``launch.ip_config``), for a job on
    ``part_config`` whose generated ip-config and ``logs/<process>.log`` go under
    ``workspace`` (default ``cfg.output_dir``); the console shows only the lines the trainers
    mark for the user unless ``verbose``. Pure: checks and starts nothing (that is
    :func:`launch.api.launch`'s). The one place a driver turns a run config into a launch."""
    l = cfg.launch
    workspace = cfg.output_dir if workspace is None else str(workspace)
    machines = (Machines(debug_local=l.debug_local) if l.debug_local > 0
                else Machines(ip_config=l.ip_config))
    return LaunchSpec(machines, part_config, workspace=workspace,
                      num_trainers=l.num_trainers, num_servers=l.num_servers,
                      omp_threads=l.omp_threads,
                      ssh=SSHSettings(l.ssh_port, l.ssh_user, tuple(l.ssh_opts)),
                      env=dict(l.env), log_dir=os.path.join(workspace, "logs"),
                      quiet=not verbose)


def check_machines(cfg: RunConfig) -> None:
    """The job's machines are named: ``launch.debug_local`` > 0, or ``launch.ip_config`` a
    readable ip-config listing ``data.num_parts`` machines. Checked before partitioning (the
    launcher finds it only when the job starts); pure apart from reading the ip-config.

    Raises
    ------
    ConfigError naming the keys (and the ip-config's file and line) at fault.
    """
    from launch.hosts import LaunchError, read_ip_config

    l, parts = cfg.launch, cfg.data.num_parts
    if l.debug_local > 0:
        return
    if not l.ip_config:
        raise ConfigError("launch.debug_local=0 and launch.ip_config is empty: give "
                          "launch.debug_local=N (N loopback machines on this host) or "
                          "launch.ip_config=FILE (one 'IP [PORT]' line per machine)")
    try:
        hosts = read_ip_config(l.ip_config, l.num_servers)
    except LaunchError as exc:
        raise ConfigError(f"launch.ip_config: {exc}") from None
    if len(hosts) != parts:
        raise ConfigError(f"launch.ip_config={l.ip_config} lists {len(hosts)} machines but "
                          f"data.num_parts={parts}: one partition per machine")


def launch_job(cfg: RunConfig, part_config: str, command: List[str],
               verbose: bool = False) -> int:
    """Run ``command`` in every trainer (and DGL servers) of the job :func:`launch_spec`
    describes (workspace ``cfg.output_dir``); returns its exit code (2: bad launch input,
    one ``error:`` line, nothing started)."""
    return launch(launch_spec(cfg, part_config, verbose=verbose), command)


def run_one(config_path: str, overrides: Sequence[str],
            verbose: bool = False) -> Tuple[int, Optional[dict]]:
    """Prepare, launch and report one run config; returns the exit code (2: bad input) and
    the run's ``results.json`` content (None on failure)."""
    from .prepare import prepare_run

    t0 = time.time()
    try:
        cfg = load_config(config_path, overrides)
        check_machines(cfg)
        plan, meta, resolved = prepare_run(cfg, config_path)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, PlanError, TAGFormatError
        print(f"error: {exc}", file=sys.stderr)
        return 2, None
    with TreeMemoryMonitor(os.getpid()) as mem:
        rc, restarts = run_with_restarts(
            lambda _i: launch_job(cfg, meta["part_config"], plan.train_command(resolved),
                                  verbose),
            cfg.launch.max_restarts, "the distributed job",
            before_retry=lambda: clean_stale_checkpoints(cfg.output_dir))
    if rc != 0:
        print(f"[pipeline] the distributed job failed (exit code {rc})", file=sys.stderr)
        return rc, None
    summary = write_results(cfg, plan.results(), time.time() - t0, mem.peak_bytes / 2**20,
                            restarts)
    return 0, summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..config.cli import parser

    p = parser("lmgnn-run", "Partition a TAG, run the LM-GNN stages as one DistDGL job, "
               "report (results.json, report.png).")
    p.add_argument("--config", required=True, action="append",
                   help="run config YAML (repeat to run several, e.g. one per task)")
    p.add_argument("--summary", help="with several configs: write their task table here (JSON)")
    p.add_argument("--verbose", action="store_true",
                   help="show every process's output on the console (it is always in "
                        "<output_dir>/logs/<process>.log)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    rows: List[dict] = []
    for path in args.config:
        rc, results = run_one(path, args.overrides, args.verbose)
        if rc != 0:
            return rc
        rows += task_rows(results)
    if len(args.config) > 1 or args.summary:
        print("\n" + format_task_table(rows))
        if args.summary:
            from ..run.checkpoint import write_json_atomic

            write_json_atomic(args.summary, {"configs": args.config, "rows": rows})
            print(f"task table: {args.summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
