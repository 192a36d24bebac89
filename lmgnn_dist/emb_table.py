"""LM-embedding table in DGL's distributed KV store, and full-graph no-grad encoding.

One ``DistTensor`` per node type, partitioned with the graph's node partition policy, so each
server holds the rows of its own partition and any trainer reads/writes any row. Stage 2 fills
it once with the frozen LM; stage 3 reads inference nodes from it and writes back every
with-grad encoding (detached), which keeps it fresh between full re-encodings.
"""
from __future__ import annotations

import time
from typing import Dict

import torch
from tqdm.auto import tqdm

from .model.lm import LMEncoder


class LMEmbeddingTable:
    """``DistTensor`` ``[num_nodes(ntype), dim]`` float32 per node type.

    Parameters
    ----------
    g : ``DistGraph``.
    dim : embedding width (the LM's hidden size).
    name : prefix of the KV-store names (``<name>_<ntype>``).
    """

    def __init__(self, g, dim: int, name: str = "lm_emb"):
        import dgl

        self.g = g
        self.dim = dim
        self.tables: Dict[str, "dgl.distributed.DistTensor"] = {
            nt: dgl.distributed.DistTensor((g.num_nodes(nt), dim), torch.float32,
                                           name=f"{name}_{nt}",
                                           part_policy=g.get_node_partition_policy(nt),
                                           persistent=True)
            for nt in g.ntypes}
        self.rows_written = 0

    def read(self, ids: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """ntype -> float32 ``[len(ids[nt]), dim]`` rows (over RPC for remote partitions)."""
        return {nt: self.tables[nt][i] for nt, i in ids.items()}

    def write(self, ntype: str, ids: torch.Tensor, emb: torch.Tensor) -> None:
        """Write rows ``ids`` (int64 ``[B]``) of ``ntype`` with ``emb`` (``[B, dim]``, detached)."""
        if len(ids):
            self.tables[ntype][ids] = emb.detach().float()
            self.rows_written += len(ids)

    def encode_all(self, lm: LMEncoder, batch_size: int, show_progress: bool,
                   chunk_size: int = 512) -> Dict[str, float]:
        """Encode every node once without gradient; each trainer takes its ``node_split`` share.

        Collective: all trainers must call it; ends with a barrier so the table is complete
        everywhere on return. Returns ``{"nodes": this trainer's count, "seconds": wall}``.
        """
        import dgl

        t0 = time.time()
        total = 0
        pb = self.g.get_partition_book()
        for nt in self.g.ntypes:
            mine = dgl.distributed.node_split(torch.ones(self.g.num_nodes(nt), dtype=torch.bool),
                                              pb, ntype=nt, force_even=True)
            tokens = self.g.nodes[nt].data["input_ids"]
            bar = tqdm(total=len(mine), desc=f"encode {nt} (no grad)", unit="node",
                       disable=not show_progress, mininterval=10.0, ascii=True)
            for start in range(0, len(mine), chunk_size):
                ids = mine[start:start + chunk_size]
                self.write(nt, ids, lm.encode_no_grad(tokens[ids], batch_size))
                bar.update(len(ids))
            bar.close()
            total += len(mine)
        self.g.barrier()
        return {"nodes": total, "seconds": time.time() - t0}
