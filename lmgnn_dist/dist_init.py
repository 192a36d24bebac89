"""Distributed set-up of one process: DGL servers/clients and ``torch.distributed``.

Everything about process start-up lives here, so the stage code reads top to bottom like
DGL's distributed examples: :func:`initialize` -> ``DistGraph`` -> ``node_split`` ->
``DistNodeDataLoader`` -> model -> loop.

Several simulated machines on one host
--------------------------------------
DGL identifies a client's machine by matching the ip-config's addresses against the host's
network interfaces, and each machine's main server keeps its partition (graph structure,
partition book and every KV-store tensor) in POSIX shared memory under names derived only from
the graph/tensor name. With two "machines" on one host (127.0.0.1 and 127.0.0.2) this breaks
silently: every client believes it is machine 0, and the second server's shared memory
overwrites the first's, so reads return another partition's rows. The launcher therefore tells
each loopback process its machine (``LMGNN_MACHINE_ID``/``LMGNN_MACHINE_IP``) and job
(``LMGNN_JOB_ID``), and :func:`_isolate_local_machine` (a) makes DGL's interface lookup return
that machine's IP and (b) prefixes every shared-memory name created or opened by DGL in this
process with ``j<job>_m<id>_``, so each simulated machine of each job gets its own
shared-memory namespace, as separate hosts would (two concurrent jobs on one host would
otherwise also collide: tensor names such as ``lm_emb_paper`` repeat across jobs). Processes on
real remote hosts are left untouched.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Optional

# a job process that raised an exception other than a lost connection exits with this code;
# the drivers do not retry it (a bug or bad input repeats on every attempt)
from launch.watch import EXCEPTION_EXIT_CODE
if TYPE_CHECKING:
    import torch

_ISOLATED: Optional[str] = None


def _isolate_local_machine(machine_ip: str, machine_id: int, job_id: str = "") -> None:
    """Give this process the shared-memory namespace and identity of one simulated machine.

    Idempotent; see the module docstring for why. Patches the few DGL entry points through
    which every shared-memory name passes (``empty_shared_mem``, ``exist_shared_mem_array``,
    heterograph ``shared_memory``/``create_heterograph_from_shared_memory``) and
    ``rpc_client.local_ip4_addr_list``.
    """
    global _ISOLATED
    prefix = f"j{job_id}_m{machine_id}_" if job_id else f"m{machine_id}_"
    if _ISOLATED is not None:
        if _ISOLATED != prefix:
            raise RuntimeError(f"process already isolated as {_ISOLATED!r}, not {prefix!r}")
        return
    import dgl
    import dgl.distributed.dist_graph as dist_graph
    import dgl.distributed.graph_partition_book as gpb_mod
    import dgl.distributed.kvstore as kvstore
    import dgl.distributed.rpc_client as rpc_client
    import dgl.distributed.shared_mem_utils as shm_utils
    import dgl.heterograph_index as hgi
    import dgl.ndarray as dgl_nd
    from dgl._ffi import ndarray as ffi_nd

    orig_empty = ffi_nd.empty_shared_mem
    orig_exist = dgl_nd.exist_shared_mem_array
    orig_create = hgi.create_heterograph_from_shared_memory
    orig_copy = hgi.HeteroGraphIndex.shared_memory

    def ns(name: str) -> str:  # POSIX names may start with "/": keep it first
        return "/" + prefix + name[1:] if name.startswith("/") else prefix + name

    def empty_shared_mem(name, is_create, shape, dtype):
        return orig_empty(ns(name), is_create, shape, dtype)

    def exist_shared_mem_array(name):
        return orig_exist(ns(name))

    def create_heterograph_from_shared_memory(name):
        return orig_create(ns(name))

    def shared_memory(self, name, ntypes=None, etypes=None, formats=("coo", "csr", "csc")):
        return orig_copy(self, ns(name), ntypes, etypes, formats)

    for mod in (dgl_nd, shm_utils, kvstore, gpb_mod, dist_graph):
        if hasattr(mod, "empty_shared_mem"):
            mod.empty_shared_mem = empty_shared_mem
        if hasattr(mod, "exist_shared_mem_array"):
            mod.exist_shared_mem_array = exist_shared_mem_array
    hgi.create_heterograph_from_shared_memory = create_heterograph_from_shared_memory
    hgi.HeteroGraphIndex.shared_memory = shared_memory
    rpc_client.local_ip4_addr_list = lambda: {machine_ip}
    _ISOLATED = prefix
    del dgl


@dataclass
class DistContext:
    """What a trainer knows about the job after :func:`initialize`.

    Attributes
    ----------
    rank, world_size : ``torch.distributed`` rank/size over all trainers.
    machine_id : this trainer's machine (= its local partition id).
    local_rank : this trainer's index on its machine (``LOCAL_RANK``; its GPU on a GPU machine).
    """

    rank: int
    world_size: int
    machine_id: int
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_server() -> bool:
    return os.environ.get("DGL_ROLE", "client") == "server"


def initialize(ip_config: Optional[str] = None, timeout_s: int = 1800) -> Optional[DistContext]:
    """Start this process's role in a job started by ``launch/run_dist.py``.

    In a server process (``DGL_ROLE=server``) this runs the DGL server and exits the process
    when every client has finished (it never returns). In a trainer it connects to the DGL
    servers, then joins ``torch.distributed`` over gloo (``MASTER_ADDR``/``RANK``/... from the
    launcher) and returns the :class:`DistContext`.

    Raises
    ------
    RuntimeError if the DGL environment variables of the launcher are missing.
    """
    import dgl
    import torch.distributed as dist

    ip_config = ip_config or os.environ.get("DGL_IP_CONFIG")
    if not ip_config:
        raise RuntimeError("DGL_IP_CONFIG is not set: start trainers with launch/run_dist.py")
    if os.environ.get("LMGNN_MACHINE_IP"):
        _isolate_local_machine(os.environ["LMGNN_MACHINE_IP"], int(os.environ["LMGNN_MACHINE_ID"]),
                               os.environ.get("LMGNN_JOB_ID", ""))
    dgl.distributed.initialize(ip_config)  # a server process exits inside this call
    if not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    from dgl.distributed import rpc

    return DistContext(dist.get_rank(), dist.get_world_size(), rpc.get_machine_id(),
                       int(os.environ.get("LOCAL_RANK", "0")))


#: exit code of a process whose peer, server or connection was lost: the drivers retry it
LOST_PEER_EXIT_CODE = 1
_LOST_PEER = re.compile(r"connection (closed|reset|refused|lost)|closed by peer|broken pipe|"
                        r"timed? ?out|socket|peer|gloo|rpc|server.*(exit|lost)", re.IGNORECASE)


def all_reduce(t: "torch.Tensor", op=None) -> "torch.Tensor":
    """A reduced copy of ``t`` over all trainers (collective; ``op`` default SUM); ``t`` is
    left as it was."""
    import torch.distributed as dist

    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op is None else op)
    return t


def all_gather_objects(obj) -> list:
    """``obj`` of every trainer, in rank order (collective; pickled, so for small things such
    as one split's per-node predictions)."""
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def exit_code_of(exc: BaseException) -> int:
    """The exit code of a job process that ends on ``exc``: :data:`LOST_PEER_EXIT_CODE` when
    it is a lost peer/server/connection (a ``ConnectionError``/``TimeoutError``, or a
    gloo/RPC error naming one: retried), :data:`EXCEPTION_EXIT_CODE` for any other exception
    (a bug or bad input: not retried)."""
    if isinstance(exc, (ConnectionError, TimeoutError, EOFError)):
        return LOST_PEER_EXIT_CODE
    if _LOST_PEER.search(f"{type(exc).__name__}: {exc}"):
        return LOST_PEER_EXIT_CODE
    return EXCEPTION_EXIT_CODE


def run_and_exit(main, argv) -> None:
    """Run a job process's ``main(argv)`` and end the process with its outcome.

    A trainer that raises must *exit*: DGL's client keeps the interpreter alive after an
    exception (its exit handlers wait for servers and peers), so the launcher would wait
    forever instead of stopping the job. The traceback is printed, then one line
    ``error: <type>: <message>`` (what the launcher reports), output flushed, and the process
    leaves with ``os._exit``: the code of a ``SystemExit``, else :func:`exit_code_of` the
    exception (3: not retried; 1: a lost peer, retried).
    """
    import sys
    import traceback

    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001 - any failure must end the process
        traceback.print_exc()
        last = (str(exc).strip().splitlines() or [""])[-1]
        print(f"error: {type(exc).__name__}: {last}", file=sys.stderr)
        code = exit_code_of(exc)
    if code == 0:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
