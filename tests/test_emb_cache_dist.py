"""The sharded LM-embedding cache across trainers (2 servers + 2 trainers on loopback)."""
from __future__ import annotations

import subprocess
import sys

import pytest

TRAINER = r"""
import sys, torch, dgl
from lmgnn_dist.dist_init import initialize, run_and_exit
from lmgnn_dist.data.lm_cache import LMEmbeddingCache


def main(argv):
    ctx = initialize()
    g = dgl.distributed.DistGraph("tiny", part_config=argv[0])
    table = LMEmbeddingCache(g, dim=4, name="probe")
    n = g.num_nodes("paper")
    # rows owned by the other machine's partition, so reads really cross servers
    pb = g.get_partition_book()
    owner = pb.nid2partid(torch.arange(n))
    rows_a = torch.nonzero(owner == 1).squeeze(1)[:5]   # trainer 0 writes rows of partition 1
    if ctx.rank == 0:
        table.write("paper", rows_a, torch.arange(20, dtype=torch.float32).view(5, 4), step=5)
        table.lookup("paper", rows_a, step=5, max_staleness=None)  # flush: see LMEmbeddingCache.write
    g.barrier()
    if ctx.rank == 1:
        emb, hit = table.lookup("paper", rows_a, step=6, max_staleness=2)
        assert torch.equal(emb, torch.arange(20, dtype=torch.float32).view(5, 4)), emb
        assert hit.all()
        _, hit = table.lookup("paper", rows_a, step=8, max_staleness=2)     # 8 - 5 > 2: stale
        assert not hit.any()
        _, hit = table.lookup("paper", rows_a, step=100, max_staleness=None)  # never stale
        assert hit.all()
        others = torch.nonzero(owner == 0).squeeze(1)[:3]                  # never written
        _, hit = table.lookup("paper", others, step=6, max_staleness=2)
        assert not hit.any()
        s = table.stats
        assert (s.hits, s.stale_misses, s.misses, s.rows_written) == (10, 5, 3, 0), s
        print("CACHE-OK", s.as_dict(), flush=True)
    g.barrier()
    dgl.distributed.exit_client()


run_and_exit(main, sys.argv[1:])
"""


@pytest.fixture(scope="module")
def tiny_parts(tmp_path_factory, tiny_tag_dir):
    from partition.build import PartitionOptions, partition_tag

    out = tmp_path_factory.mktemp("cache") / "parts"
    partition_tag(tiny_tag_dir, out, PartitionOptions(max_seq_len=8, graph_name="tiny"),
                  progress=False)
    return out


def test_row_written_by_trainer_a_is_read_by_trainer_b(tmp_path, tiny_parts):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    part = str(tiny_parts / "tiny.json")
    out = subprocess.run([sys.executable, "launch/run_dist.py", "--debug-local", "2",
                          "--workspace", str(tmp_path), "--part-config", part, "--",
                          sys.executable, str(script), part],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[trainer-1] CACHE-OK" in out.stdout
