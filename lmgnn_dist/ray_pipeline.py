"""Ray driver of a whole run: one DistDGL job per stage, each on a Ray placement group.

``python -m lmgnn_dist.ray_pipeline --config X.yaml [--address A | --local-cpus N] [k=v ...]``

or, against a running cluster (``ray start --head``)::

    ray job submit --address http://127.0.0.1:8265 -- \\
        python -m lmgnn_dist.ray_pipeline --config examples/cora/pipeline.yaml

1. Connects to Ray: ``--address`` if given; else the cluster of ``RAY_ADDRESS`` (set by ``ray
   job submit``) or a running local cluster (``address="auto"``); else it starts a local
   instance (``--local-cpus`` CPUs; ``--local-cpus`` always starts one).
2. Partitions the TAG as :mod:`lmgnn_dist.pipeline` does (:func:`ensure_partitions`).
3. Runs each stage (the baseline if configured, then each of ``cfg.stages``) as its own
   distributed job, skipping stages whose checkpoint is complete: a placement group with one
   bundle per machine (= partition; ``launch.ray_cpus_per_machine`` CPUs each, strategy
   ``launch.ray_placement_strategy``), one :class:`MachineActor` per bundle, which starts that
   machine's DGL server(s) and trainer(s) (``python -m lmgnn_dist.train ... stages=[k]``) as
   subprocesses with the environment contract of ``launch/run_dist.py``
   (:func:`launch.run_dist.process_specs`). The ip-config lists the actors' node IPs, or the
   loopback IPs 127.0.0.1, 127.0.0.2, ... when every bundle is on the same node (the
   launcher's loopback debug mode, with its shared-memory isolation). The driver streams every
   process's output with a ``[m<machine> <process>]`` prefix.
4. A stage's job writes ``<output_dir>/<stage>/`` (the checkpoint the next stage's job starts
   from); the driver prints its metrics. At the end it writes ``<output_dir>/results.json``
   and prints the same table as :mod:`lmgnn_dist.pipeline`.

If any process of a stage's job fails (or an actor dies), every process of that job is stopped
(process groups, SIGTERM then SIGKILL), the actors are killed and the placement group removed;
the stage's job is then started again, all afresh (new ports and shared-memory namespace), at
most ``launch.max_restarts`` times per stage. Exit code 2 (bad input) is never retried.
Paths (config, partitions, ``output_dir``) must be the same on every node (a shared file
system), as for ``launch/run_dist.py`` over ssh.
"""
from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .config import ConfigError, RunConfig, dump_config, load_config

REPO_ROOT = str(Path(__file__).resolve().parents[1])
LOG = "[ray-pipeline]"


class RayPipelineError(RuntimeError):
    """The stage's job cannot be placed or started (not retried; exit code 2)."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """preexec_fn: SIGKILL this process when its parent (the actor) dies, e.g. ``ray.kill``."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class MachineActor:
    """One machine (= partition) of a stage's job, placed on its placement-group bundle.

    Starts the machine's DGL server(s) and trainer(s) as subprocesses (each in its own process
    group, killed if the actor dies), collects their output lines and exit codes, and stops
    them on request. Every method returns at once; the driver polls. The methods run on the
    actor's main thread (a non-threaded actor), which is what ``PR_SET_PDEATHSIG`` ties the
    children's lifetime to.
    """

    def __init__(self, machine: int):
        self.machine = machine
        self.procs: List[Tuple[str, bool, subprocess.Popen]] = []
        self._lines: List[str] = []
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._mem = None

    def node(self) -> Dict[str, str]:
        """This actor's node: ``{"ip": ..., "node_id": ...}``."""
        import ray

        return {"ip": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def free_port(self, ip: str) -> int:
        """A TCP port free on ``ip`` on this actor's node."""
        from launch.run_dist import free_port

        return free_port(ip)

    def start(self, specs: List[dict], command: List[str], cwd: str) -> int:
        """Start this machine's processes (``specs``: dicts of a ``ProcSpec``); returns how many."""
        from .pipeline import TreeMemoryMonitor

        self._mem = TreeMemoryMonitor(os.getpid()).__enter__()
        for spec in specs:
            env = dict(os.environ)
            env.update(spec["env"])
            popen = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)
            self.procs.append((spec["name"], spec["is_server"], popen))
            t = threading.Thread(target=self._stream, args=(spec["name"], popen), daemon=True)
            t.start()
            self._threads.append(t)
        return len(specs)

    def _stream(self, name: str, popen: subprocess.Popen) -> None:
        # universal newlines: a progress bar's '\r' refreshes become lines of their own
        text = io.TextIOWrapper(popen.stdout, encoding="utf-8", errors="replace", newline=None)
        for line in text:
            line = line.rstrip("\n")
            if line.strip():
                with self._lock:
                    self._lines.append(f"[m{self.machine} {name}] {line}")

    def poll(self, drain: bool = False) -> dict:
        """``{"procs": [(name, is_server, exit code or None)], "lines": [new output lines],
        "peak_rss": bytes (this actor and its processes)}``; ``drain`` waits briefly for the
        output of processes that have ended."""
        if drain:
            for t in self._threads:
                t.join(timeout=2)
        with self._lock:
            lines, self._lines = self._lines, []
        return {"procs": [(n, s, p.poll()) for n, s, p in self.procs], "lines": lines,
                "peak_rss": self._mem.peak_bytes if self._mem is not None else 0}

    def stop(self, wait_s: float = 10.0) -> None:
        """SIGTERM every running process group, SIGKILL after ``wait_s``."""
        for _, _, p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + wait_s
        for _, _, p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def connect(address: Optional[str], local_cpus: Optional[int]) -> str:
    """``ray.init`` as the module docstring says; returns a one-line description."""
    import ray

    if local_cpus is not None:
        # address="local": a new instance even where a cluster is running on this host
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False,
                 log_to_driver=False)
        return f"a local Ray instance with {local_cpus} CPUs"
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address or os.environ["RAY_ADDRESS"], log_to_driver=False)
        return f"the Ray cluster at {address or os.environ['RAY_ADDRESS']}"
    try:
        ray.init(address="auto", log_to_driver=False)
        return "the running Ray cluster (address=auto)"
    except ConnectionError:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        return "a local Ray instance (no cluster running)"


def _alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def job_hosts(nodes: List[Dict[str, str]]):
    """The ip-config hosts of a job whose machine ``m`` runs on ``nodes[m]``.

    All machines on one node: loopback 127.0.0.(m+1) (shared-memory isolation per machine);
    each on its own node: the node IPs.

    Raises
    ------
    RayPipelineError if some but not all machines share a node (DGL tells machines apart by
    IP, and loopback addresses do not reach other nodes).
    """
    from launch.run_dist import Host

    ids = [n["node_id"] for n in nodes]
    if len(set(ids)) == 1:
        return [Host(f"127.0.0.{m + 1}", 0) for m in range(len(nodes))]
    if len(set(ids)) == len(ids):
        return [Host(n["ip"], 0) for n in nodes]
    raise RayPipelineError(
        f"the placement group put {len(ids)} machines on {len(set(ids))} nodes; each machine "
        "needs its own node, or all one node: set launch.ray_placement_strategy=STRICT_SPREAD "
        "(enough nodes) or STRICT_PACK (one node)")


class StageJob:
    """One attempt of one stage's distributed job on a fresh placement group."""

    def __init__(self, cfg: RunConfig, name: str, command: List[str], part_config: str,
                 placement_timeout_s: float = 300.0, server_grace_s: float = 60.0):
        self.cfg, self.name, self.command, self.part_config = cfg, name, command, part_config
        self.placement_timeout_s, self.server_grace_s = placement_timeout_s, server_grace_s
        self.pg = None
        self.actors: list = []
        self.peak_rss = 0
        self._peaks: Dict[int, int] = {}

    def _create(self) -> List[dict]:
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        l, n = self.cfg.launch, self.cfg.data.num_parts
        cpus = l.ray_cpus_per_machine or float(l.num_trainers * l.omp_threads)
        self.pg = placement_group([{"CPU": cpus}] * n, strategy=l.ray_placement_strategy)
        if not self.pg.wait(timeout_seconds=self.placement_timeout_s):
            raise RayPipelineError(
                f"a placement group of {n} bundles x {cpus:g} CPU ({l.ray_placement_strategy}) "
                f"could not be placed within {self.placement_timeout_s:.0f}s; the cluster has "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs on {_alive_nodes()} node(s) "
                "(see launch.ray_cpus_per_machine / ray_placement_strategy)")
        env = {"PYTHONPATH": os.pathsep.join(
            [REPO_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
        actor_cls = ray.remote(MachineActor)
        self.actors = [actor_cls.options(
            num_cpus=cpus, runtime_env={"env_vars": env}, name=None,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.pg, placement_group_bundle_index=m)).remote(m) for m in range(n)]
        return ray.get([a.node.remote() for a in self.actors])

    def run(self) -> int:
        """Place, start and supervise the job; always tears it down. Returns its exit code.

        Raises
        ------
        RayPipelineError if it cannot be placed (see :func:`job_hosts`).
        """
        import ray
        from ray.exceptions import RayError

        from launch.run_dist import process_specs

        try:
            nodes = self._create()
            hosts = job_hosts(nodes)
            for m, h in enumerate(hosts):
                h.port = ray.get(self.actors[m].free_port.remote(h.ip))
            master_port = ray.get(self.actors[0].free_port.remote(hosts[0].ip))
            mode = ("loopback machines on one node " + nodes[0]["ip"]
                    if hosts[0].is_local else "one node per machine")
            ip_config = Path(self.cfg.output_dir).resolve() / "ray" / f"ip_config_{self.name}.txt"
            ip_config.parent.mkdir(parents=True, exist_ok=True)
            ip_config.write_text("".join(f"{h.ip} {h.port}\n" for h in hosts))
            l = self.cfg.launch
            specs = process_specs(hosts, self.part_config, str(ip_config), l.num_trainers,
                                  l.num_servers, omp_threads=l.omp_threads,
                                  job_id=os.urandom(4).hex(), master_port=master_port)
            print(f"{LOG} {self.name}: {len(hosts)} machines ({mode}): "
                  + ", ".join(f"m{m}={h.ip}:{h.port}" for m, h in enumerate(hosts)), flush=True)
            ray.get([a.start.remote([s.__dict__ for s in specs if s.machine == m], self.command,
                                    os.getcwd()) for m, a in enumerate(self.actors)])
            return self._supervise()
        except RayError as exc:
            print(f"{LOG} {self.name}: Ray error while starting the job: "
                  f"{str(exc).splitlines()[0]}", flush=True)
            return 1
        finally:
            self.teardown()

    def _poll(self, drain: bool = False) -> Tuple[list, Optional[str]]:
        import ray
        from ray.exceptions import RayError

        procs, dead = [], None
        refs = [a.poll.remote(drain) for a in self.actors]
        for m, ref in enumerate(refs):
            try:
                r = ray.get(ref, timeout=120)
            except (RayError, TimeoutError) as exc:
                dead = f"machine {m}'s actor is lost ({type(exc).__name__})"
                continue
            for line in r["lines"]:
                print(line, flush=True)
            procs += [(m, *p) for p in r["procs"]]
            self._peaks[m] = r["peak_rss"]
        self.peak_rss = sum(self._peaks.values())
        return procs, dead

    def _supervise(self) -> int:
        """Until every trainer ended 0 (then the servers, with a grace period) or one failed."""
        servers_done_by: Optional[float] = None
        while True:
            procs, dead = self._poll()
            if dead:
                print(f"{LOG} {self.name}: {dead}; stopping the job", flush=True)
                return 1
            failed = [(m, n, rc) for m, n, _, rc in procs if rc not in (None, 0)]
            if failed:
                m, n, rc = failed[0]
                print(f"{LOG} {self.name}: m{m} {n} exited with code {rc}; stopping the job",
                      flush=True)
                return rc
            if all(rc == 0 for _, _, is_server, rc in procs if not is_server):
                servers_done_by = servers_done_by or time.time() + self.server_grace_s
                if all(rc is not None for *_, rc in procs):
                    self._poll(drain=True)
                    return 0
                if time.time() > servers_done_by:
                    print(f"{LOG} {self.name}: servers did not exit after the trainers; stopping "
                          "them", flush=True)
                    return 0
            time.sleep(0.5)

    def teardown(self) -> None:
        """Stop every process (process groups), kill the actors, remove the placement group."""
        import ray
        from ray.exceptions import RayError
        from ray.util.placement_group import remove_placement_group

        if self.actors:
            refs = [a.stop.remote() for a in self.actors]
            for ref in refs:
                try:
                    ray.get(ref, timeout=60)
                except (RayError, TimeoutError):
                    pass  # a lost actor's processes died with it (PR_SET_PDEATHSIG)
            try:
                self._poll(drain=True)
            except Exception:  # noqa: BLE001 - best effort: flush the last output lines
                pass
            for a in self.actors:
                ray.kill(a)
            self.actors = []
        if self.pg is not None:
            remove_placement_group(self.pg)
            self.pg = None


def stage_overrides(name: str) -> List[str]:
    """Config overrides that make a trainer run only stage ``name`` (``baseline``/``stage<k>``)."""
    if name == "baseline":
        return ["stages=[]", "baseline=true"]
    return [f"stages=[{int(name[len('stage'):])}]", "baseline=false"]


def run_pipeline(cfg: RunConfig, config_path: str, placement_timeout_s: float = 300.0) -> int:
    """Partition, then run every stage of ``cfg`` as its own job with restarts; returns the
    exit code (0: ``results.json`` written)."""
    from . import checkpoint as ckpt
    from .pipeline import (check_model_paths, clean_stale_checkpoints, ensure_partitions,
                           planned_stages, prepare_output_dir, run_with_restarts, train_command,
                           write_summary)

    t0 = time.time()
    try:
        check_model_paths(cfg)
        meta = ensure_partitions(cfg)
    except (ValueError, FileNotFoundError) as exc:  # TAGFormatError, ConfigError: ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prepare_output_dir(cfg)
    stages: Dict[str, dict] = {}
    restarts, peak_jobs = 0, 0
    for name in planned_stages(cfg):
        if ckpt.is_complete(cfg.output_dir, name):
            stages[name] = ckpt.load_metrics(cfg.output_dir, name)
            print(f"{LOG} {name}: checkpoint {ckpt.stage_dir(cfg.output_dir, name)} is "
                  "complete; not run again", flush=True)
            continue
        if name == "stage3" and not ckpt.is_complete(cfg.output_dir, "stage2"):
            print(f"error: stage 3 needs the stage-2 checkpoint "
                  f"{ckpt.stage_dir(cfg.output_dir, 'stage2')}; run stage 2 first",
                  file=sys.stderr)
            return 2
        command = train_command(config_path, *stage_overrides(name))
        t_stage = time.time()

        def attempt(i: int, name=name, command=command) -> int:
            nonlocal peak_jobs
            print(f"{LOG} {name}: starting its job (attempt {i + 1})", flush=True)
            job = StageJob(cfg, name, command, meta["part_config"], placement_timeout_s)
            try:
                rc = job.run()
            except RayPipelineError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            peak_jobs = max(peak_jobs, job.peak_rss)
            if rc == 0 and not ckpt.is_complete(cfg.output_dir, name):
                print(f"{LOG} {name}: the job ended without writing "
                      f"{ckpt.stage_dir(cfg.output_dir, name)}/metrics.json", flush=True)
                return 1
            return rc

        rc, r = run_with_restarts(attempt, cfg.launch.max_restarts, f"{name}'s job",
                                  before_retry=lambda: clean_stale_checkpoints(cfg.output_dir),
                                  log_prefix=LOG)
        restarts += r
        if rc != 0:
            print(f"{LOG} {name} failed (exit code {rc})", file=sys.stderr)
            return rc
        stages[name] = ckpt.load_metrics(cfg.output_dir, name)
        m = stages[name]
        acc = (f"  val_acc {m['val_acc']:.4f}  test_acc {m['test_acc']:.4f}"
               if "val_acc" in m else "")
        print(f"{LOG} {name}: done, job wall time {time.time() - t_stage:.1f}s "
              f"(stage {m['seconds']:.1f}s){acc}; checkpoint "
              f"{ckpt.stage_dir(cfg.output_dir, name)}", flush=True)
    # the largest stage job's peak (actors + their processes, per-machine peaks summed) + the
    # driver process itself (its process tree would include a local Ray instance's workers)
    driver_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # the last job's results.json (its trainers' summary of that one stage) as the base: keys
    # other than config/stages the trainers write are kept as lmgnn_dist.pipeline keeps them
    res_path = Path(cfg.output_dir) / "results.json"
    base = json.loads(res_path.read_text()) if res_path.exists() else {}
    write_summary(cfg, stages, time.time() - t0, (peak_jobs + driver_peak) / 2**20, restarts,
                  peak_label="Ray actors + servers + trainers of the largest stage job + driver",
                  base=base)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Run the LM-GNN stages as Ray-placed DistDGL jobs.")
    p.add_argument("--config", required=True, help="run config YAML")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, a running "
                       "cluster, else a new local instance)")
    where.add_argument("--local-cpus", type=int, metavar="N",
                       help="start a local Ray instance with N CPUs (tests, one machine)")
    p.add_argument("--placement-timeout", type=float, default=300.0, metavar="S",
                   help="seconds to wait for a stage's placement group (default 300)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. stage1.max_steps=5")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.local_cpus is not None and args.local_cpus < 1:
        print(f"error: --local-cpus must be >= 1, got {args.local_cpus}", file=sys.stderr)
        return 2
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    resolved = str(Path(cfg.output_dir).resolve() / "config.yaml")
    dump_config(cfg, resolved)
    import ray

    where_desc = connect(args.address, args.local_cpus)
    # `ray job stop` / kill: unwind through the finally blocks (teardown of the stage's job);
    # set after ray.init, which installs its own handler
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    print(f"{LOG} connected to {where_desc}: {ray.cluster_resources().get('CPU', 0):g} CPUs on "
          f"{_alive_nodes()} node(s)", flush=True)
    try:
        return run_pipeline(cfg, resolved, args.placement_timeout)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
