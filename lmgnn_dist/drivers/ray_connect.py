"""The Ray driver's connection to Ray, checked before any job is placed.

* :func:`check_address`: a cluster address given with ``--address`` (or ``RAY_ADDRESS``) is
  tried with a TCP connect and a gRPC handshake (``grpc.channel_ready_future``) of at most
  a few seconds before ``ray.init``, which would otherwise retry a dead or wrong address for
  minutes ("Failed to connect to GCS ...") with SIGTERM and Ctrl-C unanswered.
* :func:`connect`: ``ray.init`` as :mod:`lmgnn_dist.drivers.ray_pipeline` describes; while it
  connects to an existing cluster, SIGTERM / SIGINT end the driver at once
  (:func:`_signals_end_at_once`).
* :func:`check_cpus`: right after connecting, a stage's placement group (``data.num_parts``
  bundles of ``launch.ray_cpus_per_machine`` CPUs, ``launch.ray_placement_strategy``) must fit
  the cluster's nodes, else one line instead of a placement timeout minutes later.
"""
from __future__ import annotations

import math
import os
import signal
import socket
import threading
from contextlib import contextmanager
from typing import List, Optional, Sequence, Tuple

from ..config import RunConfig

LOG = "[ray-pipeline]"
#: seconds ``ray.init`` may take to connect to an existing cluster (a healthy one: < 5 s)
CONNECT_DEADLINE_S = 60.0


class RayConnectError(RuntimeError):
    """The Ray cluster cannot be reached, or cannot hold a stage's job (exit code 2)."""


def _host_port(address: str) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of ``host:port`` / ``ray://host:port``; None for ``auto``, ``local``
    or an address without a port (left to Ray)."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_address(address: str, what: str, timeout_s: float = 3.0) -> None:
    """Check that a Ray cluster answers at ``address`` within ``timeout_s`` (TCP connect,
    then a gRPC handshake: Ray's GCS and Ray Client servers speak gRPC).

    ``what`` names where the address came from (``--address A``, ``RAY_ADDRESS=A``).

    Raises
    ------
    RayConnectError with one line naming ``what`` and the address.
    """
    hp = _host_port(address)
    if hp is None:
        return
    hint = ("start one there (ray start --head --port PORT), or leave --address out to "
            "start a local Ray instance (RAY_ADDRESS unset)")
    try:
        socket.create_connection(hp, timeout=timeout_s).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayConnectError(f"{what}: no Ray cluster answers there ({reason}); {hint}"
                              ) from None
    import grpc

    host = f"[{hp[0]}]" if ":" in hp[0] else hp[0]  # an IPv6 address in brackets
    channel = grpc.insecure_channel(f"{host}:{hp[1]}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
    except grpc.FutureTimeoutError:
        raise RayConnectError(f"{what}: something listens there but does not answer "
                              f"as a Ray cluster (no gRPC handshake within {timeout_s:g}s); "
                              "give the head node's GCS port (ray start --head prints it)"
                              ) from None
    finally:
        channel.close()


@contextmanager
def _signals_end_at_once(what: str, deadline_s: float = CONNECT_DEADLINE_S):
    """While the block runs (``ray.init`` connecting to ``what``), SIGTERM and SIGINT end the
    process at once (exit ``128 + signal``), even while the main thread is blocked in C++
    (Ray's connection retries), where Python runs no signal handler; and after
    ``deadline_s`` the process ends with one ``error:`` line naming ``what``, exit 2 (Ray
    retries a server that speaks gRPC but is not its GCS forever). A thread reads the signal
    numbers Python's C handler writes to the wakeup fd (``signal.set_wakeup_fd``: main
    thread only; elsewhere the block runs unguarded)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    r, w = socket.socketpair()
    w.setblocking(False)
    r.settimeout(deadline_s)
    old = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)

    def watch():
        while True:
            try:
                data = r.recv(1)
            except socket.timeout:
                os.write(2, f"error: {what}: Ray did not connect within {deadline_s:g}s; give "
                            "the head node's GCS port (ray start --head prints it)\n".encode())
                os._exit(2)
            except OSError:  # closed: the block ended
                return
            if not data:
                return
            if data[0] in (signal.SIGTERM, signal.SIGINT):
                os.write(2, f"{LOG} {signal.Signals(data[0]).name} while connecting to Ray: "
                            "exiting\n".encode())
                os._exit(128 + data[0])

    thread = threading.Thread(target=watch, name="ray-connect-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old)
        w.close()
        thread.join(timeout=5)
        r.close()


def connect(address: Optional[str], local_cpus: Optional[int]) -> str:
    """``ray.init``: a new local instance with ``local_cpus``; else the cluster at
    ``address`` or ``RAY_ADDRESS`` (checked first, :func:`check_address`); else a running
    cluster (``address="auto"``), else a new local instance. Returns a one-line description.

    Raises RayConnectError (one line) when the given cluster does not answer.
    """
    import ray

    if local_cpus is not None:
        # address="local": a new instance even where a cluster is running on this host
        ray.init(address="local", num_cpus=local_cpus, include_dashboard=False,
                 log_to_driver=False)
        return f"a local Ray instance with {local_cpus} CPUs"
    given = address or os.environ.get("RAY_ADDRESS")
    if given:
        what = f"--address {given}" if address else f"RAY_ADDRESS={given}"
        check_address(given, what)
        with _signals_end_at_once(what):
            ray.init(address=given, log_to_driver=False)
        return f"the Ray cluster at {given}"
    try:
        with _signals_end_at_once("the running Ray cluster (address=auto)"):
            ray.init(address="auto", log_to_driver=False)
        return "the running Ray cluster (address=auto)"
    except ConnectionError:
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
        return "a local Ray instance (no cluster running)"


def placement_problem(cfg: RunConfig, node_cpus: Sequence[float]) -> Optional[str]:
    """Why a stage's placement group cannot be placed on nodes with ``node_cpus`` CPUs each
    (a bundle lives on one node: SPREAD / PACK fit ``floor(cpus / bundle)`` bundles per node,
    STRICT_SPREAD one per node, STRICT_PACK all on one node), or None when it fits. Pure."""
    l, n = cfg.launch, cfg.data.num_parts
    per = l.ray_cpus_per_machine or float(l.num_trainers * l.omp_threads)
    fits = [math.floor(c / per + 1e-9) for c in node_cpus]
    strategy = l.ray_placement_strategy
    if strategy == "STRICT_SPREAD":
        capacity = sum(1 for f in fits if f >= 1)
    elif strategy == "STRICT_PACK":
        capacity = n if any(f >= n for f in fits) else 0
    else:
        capacity = sum(fits)
    if capacity >= n:
        return None
    key = (f"launch.ray_cpus_per_machine={l.ray_cpus_per_machine:g}"
           if l.ray_cpus_per_machine else
           f"launch.ray_cpus_per_machine=null (launch.num_trainers x launch.omp_threads = "
           f"{per:g})")
    return (f"{key}: a stage's job needs data.num_parts={n} bundles of {per:g} CPUs "
            f"({strategy}), but the Ray cluster has {sum(node_cpus):g} CPUs on "
            f"{len(node_cpus)} node(s) (largest: {max(node_cpus, default=0):g}); lower "
            "launch.ray_cpus_per_machine or add nodes")


def node_cpus() -> List[float]:
    """CPUs of every alive node of the connected Ray cluster."""
    import ray

    return [float(node.get("Resources", {}).get("CPU", 0)) for node in ray.nodes()
            if node.get("Alive")]


def check_cpus(cfg: RunConfig) -> None:
    """Raises RayConnectError (one line naming ``launch.ray_cpus_per_machine``) when a stage's
    placement group cannot fit the connected cluster (:func:`placement_problem`)."""
    problem = placement_problem(cfg, node_cpus())
    if problem:
        raise RayConnectError(problem)
