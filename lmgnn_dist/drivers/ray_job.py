"""One stage's distributed job on Ray: a placement group with one bundle per machine, one
:class:`MachineActor` per bundle running that machine's DGL server(s) and trainer(s) with the
launcher's process code (:mod:`launch.procs`), supervised by the driver (:class:`StageJob`).
"""
from __future__ import annotations

import ctypes
import os
import signal
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ..config import RunConfig

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

    Starts the machine's DGL server(s) and trainer(s) with :func:`launch.procs.start_process`
    (each in its own process group, killed if the actor dies), collects their output lines and
    exit codes, and stops them on request (:func:`launch.procs.stop_processes`): the
    launcher's own process code. Every method returns at once; the driver polls and decides
    with :class:`launch.watch.JobWatch`. The methods run on the actor's main thread (a
    non-threaded actor), which is what ``PR_SET_PDEATHSIG`` ties the children's lifetime to.
    """

    def __init__(self, machine: int):
        self.machine = machine
        self.procs: list = []
        self._lines: List[Tuple[str, str]] = []
        self._lock = threading.Lock()
        self._mem = None

    def node(self) -> Dict[str, str]:
        """This actor's node: ``{"ip": ..., "node_id": ...}``."""
        import ray

        return {"ip": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def free_port(self, ip: str) -> int:
        """A TCP port free on ``ip`` on this actor's node."""
        from launch.hosts import free_port

        return free_port(ip)

    def _collect(self, name: str, line: str) -> None:
        with self._lock:
            self._lines.append((f"m{self.machine} {name}", line))

    def start(self, specs: List[dict], command: List[str], cwd: str) -> int:
        """Start this machine's processes (``specs``: dicts of a ``ProcSpec``); returns how many."""
        from launch.memory import TreeMemoryMonitor
        from launch.procs import start_process

        self._mem = TreeMemoryMonitor(os.getpid()).__enter__()
        for spec in specs:
            self.procs.append(start_process(spec["name"], command, dict(os.environ, **spec["env"]),
                                            spec["is_server"], self._collect, cwd=cwd,
                                            preexec_fn=_die_with_parent))
        return len(specs)

    def poll(self, drain: bool = False) -> dict:
        """``{"procs": [(name, is_server, exit code or None)], "lines": [new output lines as
        ("m<machine> <process>", line)],
        "peak_rss": bytes (this actor and its processes)}``; ``drain`` waits briefly for the
        output of processes that have ended."""
        from launch.procs import join_streams

        if drain:
            join_streams(self.procs, timeout=2)
        with self._lock:
            lines, self._lines = self._lines, []
        return {"procs": [(p.name, p.is_server, p.popen.poll()) for p in self.procs],
                "lines": lines, "peak_rss": self._mem.peak_bytes if self._mem is not None else 0}

    def stop(self, wait_s: float = 10.0) -> None:
        """SIGTERM every running process group, SIGKILL after ``wait_s``."""
        from launch.procs import stop_processes

        stop_processes(self.procs, wait_s=wait_s)


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
    from launch.hosts import Host

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
                 placement_timeout_s: float = 300.0, server_grace_s: float = 60.0,
                 output=None):
        from launch.output import ProcessOutput

        self.cfg, self.name, self.command, self.part_config = cfg, name, command, part_config
        #: the processes' lines: log files + console filter (:class:`launch.output.ProcessOutput`)
        self.output = output if output is not None else ProcessOutput()
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

        from launch.procs import process_specs

        from .pipeline import launch_spec

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
            # the launcher's spec of cfg.launch (process counts, threads, env); the machines
            # are the placement group's, not its debug_local / ip_config
            l = launch_spec(self.cfg, self.part_config)
            specs = process_specs(hosts, self.part_config, str(ip_config), l.num_trainers,
                                  l.num_servers, omp_threads=l.omp_threads,
                                  extra_env=dict(l.env), job_id=os.urandom(4).hex(),
                                  master_port=master_port)
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
            for name, line in r["lines"]:
                self.output(name, line)
            procs += [(m, *p) for p in r["procs"]]
            self._peaks[m] = r["peak_rss"]
        self.peak_rss = sum(self._peaks.values())
        return procs, dead

    def _supervise(self) -> int:
        """Until every trainer ended 0 (then the servers, with a grace period) or one failed
        (:class:`launch.watch.JobWatch`, the launcher's rule)."""
        from launch.watch import JobWatch

        watch = JobWatch(self.server_grace_s)
        while True:
            procs, dead = self._poll()
            if dead:
                print(f"{LOG} {self.name}: {dead}; stopping the job", flush=True)
                return 1
            outcome = watch.check([(f"m{m} {n}", is_server, rc) for m, n, is_server, rc in procs])
            if outcome is not None:
                if outcome.failed:
                    print(f"{LOG} {self.name}: {outcome.failed} exited with code {outcome.rc}; "
                          "stopping the job", flush=True)
                elif outcome.servers_timed_out:
                    print(f"{LOG} {self.name}: servers did not exit after the trainers; "
                          "stopping them", flush=True)
                else:
                    self._poll(drain=True)
                return outcome.rc
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
