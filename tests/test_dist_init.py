"""Shared-memory isolation of simulated machines (see lmgnn_dist.dist_init)."""
from __future__ import annotations

import subprocess
import sys

CHILD = r"""
import os, sys
from lmgnn_dist.dist_init import _isolate_local_machine
_isolate_local_machine("127.0.0.2", 1, sys.argv[1])
import dgl.distributed.kvstore as kv, dgl.distributed.rpc_client as rc
arr = kv.empty_shared_mem("probe_tensor", True, (3,), "float32")
print(sorted(os.listdir("/dev/shm")))
print(rc.local_ip4_addr_list())
from dgl.distributed.rpc_client import get_local_machine_id
print(get_local_machine_id({0: [0, "127.0.0.1", 1, 1], 1: [1, "127.0.0.2", 2, 1]}))
"""


def test_isolation_prefixes_shared_memory_and_sets_machine():
    out = subprocess.run([sys.executable, "-c", CHILD, "cafe01"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    names, ips, machine = out.stdout.strip().splitlines()[-3:]
    assert "jcafe01_m1_probe_tensor" in names and "'probe_tensor'" not in names
    assert ips == "{'127.0.0.2'}"
    assert machine == "1"  # without isolation DGL would say 0 for every loopback client
