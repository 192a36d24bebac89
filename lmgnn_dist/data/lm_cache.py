"""The LM-embedding cache: sharded in DGL's distributed KV store, filled by full-graph no-grad
encoding, and keyed by the LM weights that filled it.

One ``DistTensor`` of embeddings per node type, partitioned with the graph's node partition
policy, so each server holds the rows of its own partition and any trainer reads/writes any
row; beside it a ``DistTensor`` of the training step at which each row was written (``-1``:
never). Stage 2 fills it once with the frozen LM. Stage 3 reads inference nodes from it with
bounded staleness (LEADING / DyLGNN): a row written more than ``max_staleness`` steps ago
counts as a *stale miss* and is re-encoded; every with-grad encoding is written back detached.

Like GraphStorm's LM-embedding cache, it knows which LM weights filled it
(:attr:`LMEmbeddingCache.filled_by`, :meth:`~lmgnn_dist.model.joint.NodeLMs.weights_key`):
:meth:`LMEmbeddingCache.fill` re-encodes only when the LMs differ from those.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from partition.atomic import atomic_path

from ..model.joint import NodeLMs
from ..monitor import progress_bar
from .dataloading import local_nodes
from .subbatch import encode_pipelined


@dataclass
class CacheStats:
    """Counters of one trainer's cache traffic (rows, not requests)."""

    hits: int = 0
    misses: int = 0        # never written
    stale_misses: int = 0  # written, but more than max_staleness steps ago
    rows_written: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses + self.stale_misses
        return self.hits / total if total else float("nan")

    def as_dict(self) -> dict:
        return dict(asdict(self), hit_rate=self.hit_rate)


def _never_written(shape, dtype):
    """``init_func`` of the step tensors (module-level: DGL pickles it to the servers)."""
    return torch.full(shape, -1, dtype=dtype)


class LMEmbeddingCache:
    """Embeddings float32 ``[num_nodes(ntype), dim]`` + write steps int64 ``[num_nodes, 1]``.

    Parameters
    ----------
    g : ``DistGraph``.
    dim : embedding width (the LM's hidden size).
    ntypes : the LM-encoded node types (default: all).
    name : prefix of the KV-store names (``<name>_<ntype>``, ``<name>_step_<ntype>``).

    Creating it is collective (every trainer must construct it, in the same order).
    """

    def __init__(self, g, dim: int, ntypes: Optional[List[str]] = None, name: str = "lm_emb"):
        import dgl

        self.g = g
        self.dim = dim
        self.stats = CacheStats()
        #: :meth:`NodeLMs.weights_key` of the LMs whose full encode fills the cache (None:
        #: empty, or rows written since by :meth:`write` outside a full encode). The one rule
        #: for "does the cache hold these LMs' embeddings": ``filled_by == lms.weights_key()``.
        self.filled_by: Optional[str] = None

        self.tables: Dict[str, "dgl.distributed.DistTensor"] = {}
        self.steps: Dict[str, "dgl.distributed.DistTensor"] = {}
        for nt in (g.ntypes if ntypes is None else ntypes):
            policy = g.get_node_partition_policy(nt)
            self.tables[nt] = dgl.distributed.DistTensor(
                (g.num_nodes(nt), dim), torch.float32, name=f"{name}_{nt}", part_policy=policy,
                persistent=True)
            self.steps[nt] = dgl.distributed.DistTensor(
                (g.num_nodes(nt), 1), torch.int64, name=f"{name}_step_{nt}", part_policy=policy,
                init_func=_never_written, persistent=True)

    def read(self, ids: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """ntype -> float32 ``[len(ids[nt]), dim]`` rows, whatever their age (GNN stages, eval)."""
        return {nt: self.tables[nt][i] for nt, i in ids.items()}

    def write(self, ntype: str, ids: torch.Tensor, emb: torch.Tensor, step: int) -> None:
        """Write rows ``ids`` (int64 ``[B]``) with ``emb`` (``[B, dim]``, any device; stored
        detached, float32, in the KV store) at ``step``.

        Like every DGL KV-store push, a write to rows of another machine's partition is
        asynchronous: a later read by *this* trainer sees it (requests to a server are handled
        in order), another trainer may read the older rows for a moment (bounded staleness is
        what the cache is for). Clears :attr:`filled_by` (a full encode sets it again when
        done)."""
        if len(ids):
            self.filled_by = None  # rows of other LMs: no longer one LM's full encode
            self.tables[ntype][ids] = emb.detach().to("cpu", torch.float32)
            self.steps[ntype][ids] = torch.full((len(ids), 1), int(step), dtype=torch.int64)
            self.stats.rows_written += len(ids)

    def fence(self, ntype: str, ids: torch.Tensor) -> None:
        """Return once this trainer's earlier :meth:`write` of rows ``ids`` is applied in the
        KV store: a pull of the same rows is answered by each server after the pushes this
        trainer sent it before (requests to a server are handled in order)."""
        if len(ids):
            self.tables[ntype][ids]
            self.steps[ntype][ids]

    def lookup(self, ntype: str, ids: torch.Tensor, step: int,
               max_staleness: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Read rows with bounded staleness.

        Returns
        -------
        (emb, hit) : float32 ``[B, dim]`` rows and bool ``[B]``; ``hit[i]`` is False if row
        ``i`` was never written, or (``max_staleness`` not None) was written before
        ``step - max_staleness``. Miss rows of ``emb`` are meaningless; counters are updated.
        """
        emb = self.tables[ntype][ids]
        written = self.steps[ntype][ids][:, 0]
        never = written < 0
        stale = ~never & (step - written > max_staleness) if max_staleness is not None \
            else torch.zeros_like(never)
        hit = ~never & ~stale
        self.stats.hits += int(hit.sum())
        self.stats.misses += int(never.sum())
        self.stats.stale_misses += int(stale.sum())
        return emb, hit

    def fill(self, lms: NodeLMs, batch_size: int, show_progress: bool, step: int = 0,
             **encode_kw) -> Optional[Dict[str, float]]:
        """:meth:`encode_all` with ``lms`` unless the cache already holds their embeddings
        (same :meth:`~lmgnn_dist.model.joint.NodeLMs.weights_key`). Collective, and every
        trainer decides alike (DDP keeps the LMs equal). Returns :meth:`encode_all`'s
        figures, or None when nothing was encoded."""
        key = lms.weights_key()
        if key == self.filled_by:
            return None
        return self.encode_all(lms, batch_size, show_progress, step, weights_key=key,
                               **encode_kw)

    def encode_all(self, lms: NodeLMs, batch_size: int, show_progress: bool, step: int = 0,
                   chunk_size: int = 512, pipeline_depth: int = 1,
                   sparse_rows: Optional[Callable[[str], Optional[Callable]]] = None,
                   chunk_store: Optional[Path] = None, chunk_key: str = "",
                   weights_key: Optional[str] = None) -> Dict[str, float]:
        """Encode every node of the cache's types once without gradient, each type with its LM
        (``lms.encoder(ntype)``); each trainer takes its ``node_split`` share.

        Nodes are grouped by token length (``seq_len``) so sub-batches carry little padding, and
        token fetch overlaps encoding (:func:`~lmgnn_dist.data.subbatch.encode_pipelined`).
        ``sparse_rows(ntype)`` may give a ``fetch_sparse`` function (rows to encode with
        block-sparse attention) per node type.
        ``chunk_store`` makes it resumable: chunk ``i`` of node type ``nt`` is saved (atomically)
        as ``<chunk_store>/<nt>/<chunk_key>-<i>.npy`` once encoded, and a rerun loads the
        chunks already there instead of encoding them again (``chunk_key`` must identify the
        trainer and the job layout, e.g. ``rank0of2``).
        Collective: all trainers must call it; ends with a barrier so the cache is complete
        everywhere on return, and :attr:`filled_by` names ``lms``. Rows are marked as written
        at ``step``. Returns
        ``{"nodes": this trainer's count, "seconds": wall, "chunks_encoded", "chunks_reused"}``.
        """
        t0 = time.time()
        total = encoded = reused = 0
        for nt in self.tables:
            lm = lms.encoder(nt)
            mine = local_nodes(self.g, nt)
            mine = mine[torch.argsort(self.g.nodes[nt].data["seq_len"][mine], stable=True)]
            tokens = self.g.nodes[nt].data["input_ids"]
            bar = progress_bar(len(mine), f"encode {nt} (no grad)", "node",
                               disable=not show_progress)
            for i, start in enumerate(range(0, len(mine), chunk_size)):
                ids = mine[start:start + chunk_size]
                saved = chunk_store / nt / f"{chunk_key}-{i:06d}.npy" if chunk_store else None
                if saved is not None and saved.exists():
                    emb = torch.from_numpy(np.load(saved))
                    reused += 1
                else:
                    emb = encode_pipelined(lm, tokens.__getitem__, ids, batch_size,
                                           pipeline_depth,
                                           fetch_sparse=sparse_rows(nt) if sparse_rows else None)
                    if saved is not None:
                        with atomic_path(saved) as tmp, open(tmp, "wb") as f:
                            np.save(f, emb.numpy())
                    encoded += 1
                self.write(nt, ids, emb, step)
                bar.update(len(ids))
            bar.close()
            total += len(mine)
        self.g.barrier()
        # the LMs' key, hashed once (``weights_key``: already computed by :meth:`fill`)
        self.filled_by = weights_key or lms.weights_key()
        return {"nodes": total, "seconds": time.time() - t0, "chunks_encoded": encoded,
                "chunks_reused": reused}
