"""Ray driver of a whole run: one DistDGL job per stage, each on a Ray placement group.

``python -m lmgnn_dist.drivers.ray_pipeline --config X.yaml [--address A | --local-cpus N] [k=v ...]``

or, against a running cluster (``ray start --head``)::

    ray job submit --address http://127.0.0.1:8265 -- \\
        python -m lmgnn_dist.drivers.ray_pipeline --config examples/cora/pipeline.yaml

1. Checks the config offline (:func:`~lmgnn_dist.drivers.prepare.check_inputs`), then
   connects to Ray (:mod:`.ray_connect`): ``--address`` if given; else the cluster of
   ``RAY_ADDRESS`` (set by ``ray job submit``) or a running local cluster
   (``address="auto"``); else it starts a local instance (``--local-cpus`` CPUs;
   ``--local-cpus`` always starts one). A given address that does not answer within a few
   seconds, or a cluster whose nodes cannot hold a stage's placement group
   (``launch.ray_cpus_per_machine``), is one ``error:`` line, exit 2.
2. Partitions the TAG as :mod:`lmgnn_dist.drivers.pipeline` does (:func:`ensure_partitions`).
3. Runs each stage (the baseline if configured, then each of ``cfg.stages``) as its own
   distributed job, skipping stages whose checkpoint is complete: a placement group with one
   bundle per machine (= partition; ``launch.ray_cpus_per_machine`` CPUs each, strategy
   ``launch.ray_placement_strategy``), one :class:`MachineActor` per bundle, which starts that
   machine's DGL server(s) and trainer(s) (``python -m lmgnn_dist.jobs.train ... stages=[k]``) as
   subprocesses with the environment contract of ``launch/run_dist.py``
   (:func:`launch.run_dist.process_specs`). The ip-config lists the actors' node IPs, or the
   loopback IPs 127.0.0.1, 127.0.0.2, ... when every bundle is on the same node (the
   launcher's loopback debug mode, with its shared-memory isolation). The driver streams every
   process's output with a ``[m<machine> <process>]`` prefix.
4. A stage's job writes ``<output_dir>/<stage>/`` (the checkpoint the next stage's job starts
   from); the driver prints its metrics. At the end it writes ``<output_dir>/results.json``
   and prints the same table as :mod:`lmgnn_dist.drivers.pipeline`.

If any process of a stage's job fails (or an actor dies), every process of that job is stopped
(process groups, SIGTERM then SIGKILL), the actors are killed and the placement group removed;
the stage's job is then started again, all afresh (new ports and shared-memory namespace), at
most ``launch.max_restarts`` times per stage. Exit code 2 (bad input) is never retried.
Paths (config, partitions, ``output_dir``) must be the same on every node (a shared file
system), as for ``launch/run_dist.py`` over ssh.
"""
from __future__ import annotations

import os
import resource
import signal
import sys
import time
from typing import Optional, Sequence

from ..run import checkpoint as ckpt
from ..config import RunConfig, load_config
from .ray_connect import RayConnectError, check_cpus, connect
from .ray_job import LOG, RayPipelineError, StageJob, _alive_nodes


def run_pipeline(cfg: RunConfig, placement_timeout_s: float = 300.0,
                 verbose: bool = False, config_path: Optional[str] = None) -> int:
    """Prepare the run (:func:`~lmgnn_dist.drivers.prepare.prepare_run`), then run every stage still
    to run as its own job with restarts; returns the exit code (0: ``results.json``
    written)."""
    from launch.output import ProcessOutput
    from launch.watch import run_with_restarts

    from .prepare import prepare_run
    from .results import write_results
    from ..run.runplan import PlanError, clean_stale_checkpoints

    t0 = time.time()
    try:
        plan, meta, resolved = prepare_run(cfg, config_path)
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, PlanError, TAGFormatError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    restarts, peak_jobs = 0, 0
    # every process's output into <output_dir>/logs/; the console: marked lines (or all)
    output = ProcessOutput(os.path.join(cfg.output_dir, "logs"), verbose)
    for name in plan.stages:
        done_dir = ckpt.stage_dir(cfg.output_dir, name)
        if plan.is_done(name):
            print(f"{LOG} {name}: checkpoint {done_dir} is complete; not run again", flush=True)
            continue
        try:
            plan.start_of(name)
        except PlanError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        command = plan.train_command(resolved, [name])
        t_stage = time.time()

        def attempt(i: int, name=name, command=command) -> int:
            nonlocal peak_jobs
            print(f"{LOG} {name}: starting its job (attempt {i + 1})", flush=True)
            job = StageJob(cfg, name, command, meta["part_config"], placement_timeout_s,
                           output=output)
            try:
                rc = job.run()
            except RayPipelineError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            peak_jobs = max(peak_jobs, job.peak_rss)
            if rc == 0 and not plan.is_done(name):
                print(f"{LOG} {name}: the job ended without writing {done_dir}/metrics.json",
                      flush=True)
                return 1
            return rc

        rc, r = run_with_restarts(attempt, cfg.launch.max_restarts, f"{name}'s job",
                                  before_retry=lambda: clean_stale_checkpoints(cfg.output_dir),
                                  log_prefix=LOG)
        restarts += r
        if rc != 0:
            print(f"{LOG} {name} failed (exit code {rc})", file=sys.stderr)
            return rc
        m = ckpt.load_metrics(cfg.output_dir, name)
        acc = (f"  val_acc {m['val_acc']:.4f}  test_acc {m['test_acc']:.4f}"
               if "val_acc" in m else "")
        print(f"{LOG} {name}: done, job wall time {time.time() - t_stage:.1f}s "
              f"(stage {m['seconds']:.1f}s){acc}; checkpoint {done_dir}", flush=True)
    output.close()
    # the largest stage job's peak (actors + their processes, per-machine peaks summed) + the
    # driver process itself (its process tree would include a local Ray instance's workers)
    driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    write_results(cfg, plan.results(), time.time() - t0, (peak_jobs + driver_peak) / 2**20,
                  restarts, peak_label="Ray actors + servers + trainers of the largest stage "
                  "job + driver")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from ..config.cli import parser

    p = parser("lmgnn-ray", "Run the LM-GNN stages as Ray-placed DistDGL jobs (one per stage).")
    p.add_argument("--config", required=True, help="run config YAML")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a running "
                       "cluster, else a new local instance)")
    where.add_argument("--local-cpus", type=int, metavar="N",
                       help="start a local Ray instance with N CPUs (tests, one machine)")
    p.add_argument("--placement-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for a stage's placement group (default 300)")
    p.add_argument("--verbose", action="store_true",
                   help="show every process's output on the console (it is always in "
                        "<output_dir>/logs/<process>.log)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    if args.local_cpus is not None and args.local_cpus < 1:
        print(f"error: --local-cpus must be >= 1, got {args.local_cpus}", file=sys.stderr)
        return 2
    from .prepare import check_inputs

    try:
        cfg = load_config(args.config, args.overrides)
        check_inputs(cfg)  # offline, before Ray: models, TAG, task (prepare_run repeats it)
        where_desc = connect(args.address, args.local_cpus)
    except (ValueError, FileNotFoundError, RayConnectError) as exc:  # ConfigError included
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import ray

    # `ray job stop` / kill: unwind through the finally blocks (teardown of the stage's job);
    # set after ray.init, which installs its own handler
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        print(f"{LOG} connected to {where_desc}: {ray.cluster_resources().get('CPU', 0):g} "
              f"CPUs on {_alive_nodes()} node(s)", flush=True)
        check_cpus(cfg)
        return run_pipeline(cfg, placement_timeout_s=args.placement_timeout,
                            verbose=args.verbose, config_path=args.config)
    except RayConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
