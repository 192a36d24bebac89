"""Stage 3's inference nodes: input nodes that get no gradient (back-prop on sampled nodes).

Their embeddings come from the LM-embedding cache within ``stage3.cache_max_staleness``
steps; misses are re-encoded without gradient (the async sub-batch pipeline, block-sparse
attention for low-degree rows) and written back. LEADING's refresh pipeline re-encodes
``stage3.refresh_batch_size`` uniformly drawn nodes per step into the cache. Every encoding is
counted, so the stage can report LM encodings per node per epoch.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from ..model.joint import NodeLMs
from ..subbatch import encode_pipelined

#: stage 3's LM-encoding counters (rows, summed over steps)
COUNTERS = ("with_grad", "no_grad", "from_cache", "refresh")


class InferenceNodes:
    """No-grad embeddings of inference nodes, and the refresh pipeline.

    Parameters
    ----------
    cache : the LM-embedding cache (``lookup``/``write``, :class:`~lmgnn_dist.lm_cache.
        LMEmbeddingCache`).
    token_rows : ntype -> an indexable of int token ids (``ids -> [len(ids), L]``), e.g.
        ``g.nodes[nt].data["input_ids"]``.
    num_nodes : ntype -> node count, for the LM-encoded types (refresh draws over them).
    s : the :class:`~lmgnn_dist.config.Stage3Config`.
    pipeline_depth : sub-batches in flight in :func:`~lmgnn_dist.subbatch.encode_pipelined`.
    sparse_rows : ntype -> ``ids -> bool [B]`` (rows to encode block-sparse) or None.
    timer : a :class:`~lmgnn_dist.trainer.base.PhaseTimer` (``lm_no_grad``, ``communication``).
    gen : the trainer's generator (refresh draws).
    counts : counters to continue (a resumed stage), default zeros.
    """

    def __init__(self, cache, token_rows: Callable[[str], object], num_nodes: Dict[str, int],
                 s, pipeline_depth: int, sparse_rows: Callable[[str], Optional[Callable]],
                 timer, gen: torch.Generator, counts: Optional[Dict[str, int]] = None):
        self.cache, self.token_rows, self.num_nodes = cache, token_rows, dict(num_nodes)
        self.s, self.pipeline_depth, self.sparse_rows = s, pipeline_depth, sparse_rows
        self.timer, self.gen = timer, gen
        self.counts = dict(counts) if counts else {k: 0 for k in COUNTERS}

    def encode(self, lms: NodeLMs, nt: str, ids: torch.Tensor) -> torch.Tensor:
        """Nodes ``ids`` (int64 ``[B]``) of type ``nt`` encoded without gradient ->
        float32 ``[B, D]``."""
        with self.timer("lm_no_grad"):
            return encode_pipelined(lms.encoder(nt), self.token_rows(nt).__getitem__, ids,
                                    self.s.lm_infer_batch_size, self.pipeline_depth,
                                    fetch_sparse=self.sparse_rows(nt))

    def __call__(self, lms: NodeLMs, nt: str, ids: torch.Tensor, step: int) -> torch.Tensor:
        """Embeddings float32 ``[B, D]`` of inference nodes ``ids`` at training step ``step``:
        cache hits, misses re-encoded (and cached); all re-encoded with
        ``inference_source: encode``."""
        if self.s.inference_source == "encode":
            emb = self.encode(lms, nt, ids)
            self.counts["no_grad"] += len(ids)
            return emb
        with self.timer("communication"):
            emb, hit = self.cache.lookup(nt, ids, step, self.s.cache_max_staleness)
        miss = ids[~hit]
        self.counts["from_cache"] += int(hit.sum())
        if len(miss):
            fresh = self.encode(lms, nt, miss)
            emb[~hit] = fresh
            self.counts["no_grad"] += len(miss)
            with self.timer("communication"):
                self.cache.write(nt, miss, fresh, step)
        return emb

    def refresh(self, lms: NodeLMs, step: int) -> int:
        """LEADING's second pipeline: re-encode up to ``refresh_batch_size`` distinct nodes,
        uniform over all LM-encoded nodes of every type, into the cache. Returns how many."""
        sizes = torch.tensor(list(self.num_nodes.values()))
        n = int(sizes.sum())
        picks = torch.randint(0, n, (min(self.s.refresh_batch_size, n),),
                              generator=self.gen).unique()
        ends = torch.cumsum(sizes, 0)
        owner = torch.bucketize(picks, ends, right=True)
        for i, nt in enumerate(self.num_nodes):
            ids = picks[owner == i] - (ends[i] - sizes[i])
            if len(ids):
                emb = self.encode(lms, nt, ids)
                with self.timer("communication"):
                    self.cache.write(nt, ids, emb, step)
                self.counts["refresh"] += len(ids)
        return len(picks)
