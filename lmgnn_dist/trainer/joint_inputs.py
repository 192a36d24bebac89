"""Stage 3's inputs: which input nodes get LM gradient, where the others' embeddings come
from, and what is written back -- one object, so a stage-3 step reads as
``sample -> prepare -> forward -> optimizer step -> commit -> record``.

Back-prop on sampled nodes (LM-GNN §3.3): of a batch's LM-encoded input nodes at most
``stage3.lm_train_nodes`` (targets first, ``trainable_policy``) are encoded with gradient;
the others are *inference nodes*, whose no-grad embeddings come from the policy named by
``stage3.inference_source`` (:data:`SOURCES`):

- ``cache``: the LM-embedding cache within ``cache_max_staleness`` steps; misses re-encoded
  without gradient (async sub-batch pipeline, block-sparse attention for low-degree rows)
  and written back; LEADING's refresh pipeline re-encodes ``refresh_batch_size`` uniformly
  drawn nodes per step;
- ``encode``: every inference node re-encoded with the current LMs each step (GraphStorm).

With-grad encodings are written back to the cache after the optimizer step. Every encoding
is counted, so the stage reports LM encodings per node per epoch.

Cache writes are deterministic: a step's reads all happen before its writes, and the trainers
write in rank order, each waiting until its rows are applied (:meth:`JointInputs.flush`), so
a row two trainers write in one step ends with the higher rank's value and the next step
reads the same rows in every run (DGL's KV-store pushes are otherwise asynchronous). Whether the cache holds the
current LMs' embeddings has one rule: its LM-weights key (:attr:`~lmgnn_dist.data.lm_cache.
LMEmbeddingCache.filled_by`, cleared by any partial write).

Adding an inference-node policy: a method here, its row in :data:`SOURCES`, the value in
``stage3.inference_source``'s literal (:class:`~lmgnn_dist.config.Stage3Config`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist

from .builders import sparse_rows
from ..dist_init import all_reduce
from ..data.lm_cache import CacheStats
from ..model.joint import NodeLMs
from ..data.sampling import select_trainable_nodes_hetero
from ..data.subbatch import encode_pipelined
from .timing import PhaseTimer

#: stage 3's LM-encoding counters (rows, summed over steps)
COUNTERS = ("with_grad", "no_grad", "from_cache", "refresh")


@dataclass
class StepInputs:
    """The LM-side inputs of one stage-3 step (all keyed by node type; see
    :class:`~lmgnn_dist.model.joint.JointModel`).

    tokens : int ``[T_t, L]`` token ids of the with-grad input nodes.
    train_idx, infer_idx : int64 positions of with-grad / inference nodes among the type's
        input nodes.
    h_infer : float32 ``[I_t, D]`` no-grad embeddings of the inference nodes.
    h_fixed : ``[N_in, D]`` inputs of the text-less types (learnable embeddings).
    input_ids : int64 ``[N_in]`` the type's input node ids.
    """

    tokens: Dict[str, torch.Tensor]
    train_idx: Dict[str, torch.Tensor]
    infer_idx: Dict[str, torch.Tensor]
    h_infer: Dict[str, torch.Tensor]
    h_fixed: Dict[str, torch.Tensor]
    input_ids: Dict[str, torch.Tensor]

    def model_args(self) -> tuple:
        """The :class:`~lmgnn_dist.model.joint.JointModel` arguments after ``blocks``."""
        return self.tokens, self.train_idx, self.infer_idx, self.h_infer, self.h_fixed

    @property
    def num_inputs(self) -> int:
        return sum(len(i) for i in self.input_ids.values())

    @property
    def num_with_grad(self) -> int:
        return sum(len(i) for i in self.train_idx.values())


class JointInputs:
    """Stage 3's input policy, counters and instrumentation for one trainer.

    Parameters
    ----------
    env : the trainer's :class:`~.base.StageEnv` (graph, cache, encoders, config).
    s : the :class:`~lmgnn_dist.config.Stage3Config` the stage runs with.
    gen : the trainer's generator (with-grad choice, refresh draws).
    state : a resumed progress checkpoint's rank state (counters, cache stats, time split).
    """

    def __init__(self, env, s, gen: torch.Generator, state: Optional[dict] = None):
        state = state or {}
        self.env, self.s, self.gen, self.g = env, s, gen, env.g
        self.cache = env.cache
        self.lm_types = list(env.encoders.lm_of)
        self.sparse_rows = sparse_rows(env.g, env.cfg.model.sparse_attention)
        self.timer = PhaseTimer(state.get("time_split_s"))
        self.counts = dict(state.get("counts") or {k: 0 for k in COUNTERS})
        self.targets_seen = state.get("targets_seen", 0)
        self.pending: List[Tuple[str, torch.Tensor, torch.Tensor]] = []  # writes to flush
        if self.cache is not None:
            self.cache.stats = state.get("cache", CacheStats())

    def state(self) -> dict:
        """What a progress checkpoint keeps of the inputs."""
        return {"counts": self.counts, "targets_seen": self.targets_seen,
                "cache": self.cache.stats if self.cache is not None else CacheStats(),
                "time_split_s": dict(self.timer.seconds)}

    def tokens(self, nt: str) -> object:
        return self.g.nodes[nt].data["input_ids"]

    # -- one step
    def prepare(self, batch, lms: NodeLMs, learnable, step: int) -> StepInputs:
        """Choose the with-grad nodes of ``batch`` and fetch every other input: inference
        nodes by the ``inference_source`` policy, text-less types from ``learnable``."""
        s, inp = self.s, batch.input_nodes
        lm_types = [nt for nt in self.lm_types if nt in inp]
        with self.timer("communication"):
            degrees = ({nt: self.g.nodes[nt].data["in_degree"][inp[nt]] for nt in lm_types}
                       if s.trainable_policy == "degree" else None)
            h_fixed = learnable(inp) if learnable is not None else {}
        chosen = select_trainable_nodes_hetero(
            {nt: len(inp[nt]) for nt in lm_types},
            {nt: len(batch.seeds[nt]) for nt in lm_types if nt in batch.seeds},
            s.lm_train_nodes, generator=self.gen, policy=s.trainable_policy, degrees=degrees,
            deg_threshold=s.deg_threshold)
        train_idx = {nt: chosen[nt][0] for nt in lm_types}
        infer_idx = {nt: chosen[nt][1] for nt in lm_types}
        source = SOURCES[s.inference_source]
        h_infer = {nt: source(self, lms, nt, inp[nt][infer_idx[nt]], step) for nt in lm_types}
        with self.timer("communication"):
            tokens = {nt: self.tokens(nt)[inp[nt][train_idx[nt]]] for nt in lm_types}
            self.flush(step)  # collective: every trainer's reads before any write
        return StepInputs(tokens, train_idx, infer_idx, h_infer, h_fixed,
                          {nt: inp[nt] for nt in lm_types})

    def commit(self, p: StepInputs, h_train: Dict[str, torch.Tensor], lms: NodeLMs, batch,
               step: int) -> None:
        """After the optimizer step: write the with-grad embeddings back to the cache, count,
        and run the refresh pipeline (``refresh_batch_size``)."""
        for nt, idx in p.train_idx.items():
            self.pending.append((nt, p.input_ids[nt][idx], h_train[nt].detach()))
        self.counts["with_grad"] += p.num_with_grad
        self.targets_seen += self.env.task.targets_in(batch)
        if self.s.refresh_batch_size > 0:
            self.refresh(lms, step)
        with self.timer("communication"):
            self.flush(step)

    def flush(self, step: int) -> None:
        """Write the pending rows (marked written at ``step``) in rank order. Collective:
        after a barrier (every trainer's reads of this phase are done), trainer ``r`` writes
        and waits until its rows are applied (:meth:`~lmgnn_dist.data.lm_cache.
        LMEmbeddingCache.fence`), then all meet; the last writer of a row is the highest
        rank, in every run."""
        grouped = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if grouped else (0, 1)
        if grouped:
            dist.barrier()
        for r in range(world):
            if r == rank:
                for nt, ids, emb in self.pending:
                    self.cache.write(nt, ids, emb, step)
                for nt, ids, _ in self.pending:
                    self.cache.fence(nt, ids)
                self.pending = []
            if grouped:
                dist.barrier()

    # -- the inference-node policies
    def encode(self, lms: NodeLMs, nt: str, ids: torch.Tensor) -> torch.Tensor:
        """Nodes ``ids`` (int64 ``[B]``) of type ``nt`` encoded without gradient ->
        float32 ``[B, D]``. More than one sub-batch: encoded in order of token length
        (``seq_len``), so each sub-batch, cut to its longest row, carries little padding."""
        size = self.s.lm_infer_batch_size
        with self.timer("lm_no_grad"):
            order = (torch.argsort(self.g.nodes[nt].data["seq_len"][ids], stable=True)
                     if len(ids) > size else None)
            emb = encode_pipelined(lms.encoder(nt), self.tokens(nt).__getitem__,
                                   ids if order is None else ids[order], size,
                                   self.env.cfg.pipeline_depth, fetch_sparse=self.sparse_rows(nt))
        if order is None:
            return emb
        out = torch.empty_like(emb)
        out[order] = emb
        return out

    def from_encode(self, lms: NodeLMs, nt: str, ids: torch.Tensor, step: int) -> torch.Tensor:
        """``encode`` policy: every inference node re-encoded with the current LMs."""
        self.counts["no_grad"] += len(ids)
        return self.encode(lms, nt, ids)

    def from_cache(self, lms: NodeLMs, nt: str, ids: torch.Tensor, step: int) -> torch.Tensor:
        """``cache`` policy: hits within ``cache_max_staleness``; misses re-encoded (and
        written at ``step`` by the next :meth:`flush`)."""
        with self.timer("communication"):
            emb, hit = self.cache.lookup(nt, ids, step, self.s.cache_max_staleness)
        miss = ids[~hit]
        self.counts["from_cache"] += int(hit.sum())
        if len(miss):
            fresh = self.encode(lms, nt, miss)
            emb[~hit] = fresh
            self.counts["no_grad"] += len(miss)
            self.pending.append((nt, miss, fresh))
        return emb

    def refresh(self, lms: NodeLMs, step: int) -> int:
        """LEADING's second pipeline: re-encode up to ``refresh_batch_size`` distinct nodes,
        uniform over all LM-encoded nodes of every type, for the cache (written by the next
        :meth:`flush`). Returns how many."""
        sizes = torch.tensor([self.g.num_nodes(nt) for nt in self.lm_types])
        n = int(sizes.sum())
        picks = torch.randint(0, n, (min(self.s.refresh_batch_size, n),),
                              generator=self.gen).unique()
        ends = torch.cumsum(sizes, 0)
        owner = torch.bucketize(picks, ends, right=True)
        for i, nt in enumerate(self.lm_types):
            ids = picks[owner == i] - (ends[i] - sizes[i])
            if len(ids):
                self.pending.append((nt, ids, self.encode(lms, nt, ids)))
                self.counts["refresh"] += len(ids)
        return len(picks)

    # -- what the stage reports about its inputs
    def step_scalars(self, p: StepInputs) -> dict:
        """This trainer's per-step TensorBoard scalars: LM encodings so far (with grad, no
        grad, cache hits, refresh) and its cache hit rate so far (no collective)."""
        c = self.cache.stats
        looked_up = c.hits + c.misses + c.stale_misses
        return {"lm_input_nodes/with_grad": p.num_with_grad,
                "lm_input_nodes/inference": p.num_inputs - p.num_with_grad,
                **{f"lm_encodings/{k}": v for k, v in self.counts.items()},
                "cache/hit_rate": c.hits / looked_up if looked_up else None}

    def stats(self, train_s: float, steps: int) -> dict:
        """Instrumentation summed over trainers (collective): LM encodings (total and per
        LM-encoded node, per epoch of the training targets), cache counters, time split
        (seconds, max over trainers) and mean step time."""
        keys = list(self.counts)
        counts = dict(zip(keys, (int(v) for v in all_reduce(
            torch.tensor([self.counts[k] for k in keys])).tolist())))
        c = self.cache.stats
        cache = dict(zip(["hits", "misses", "stale_misses", "rows_written"], (int(v) for v in
                     all_reduce(torch.tensor([c.hits, c.misses, c.stale_misses,
                                              c.rows_written])).tolist())))
        looked_up = cache["hits"] + cache["misses"] + cache["stale_misses"]
        cache["hit_rate"] = cache["hits"] / looked_up if looked_up else None
        phases = sorted(self.timer.seconds)
        split = dict(zip(phases, all_reduce(torch.tensor(
            [self.timer.seconds[p] for p in phases]), dist.ReduceOp.MAX).tolist()))
        n_train, seen = all_reduce(torch.tensor(
            [self.env.task.num_train_targets(), self.targets_seen])).tolist()
        epochs = seen / max(1, n_train)  # passes over the training targets, partial batches counted
        per_node_epoch = per_node_per_epoch(counts, self.g, self.lm_types, epochs)
        return {"lm_encodings": counts, "epochs": epochs,
                "lm_encodings_per_node_per_epoch": per_node_epoch, "cache": cache,
                "time_split_s": split, "train_step_s": train_s / max(1, steps)}


def per_node_per_epoch(counts: Dict[str, int], g, lm_types, epochs: float) -> Dict[str, float]:
    """LM encodings per LM-encoded node (of ``g``'s ``lm_types``) per epoch of the training
    targets: ``counts`` (kind -> encodings) / nodes / ``epochs`` (``{}`` for 0 epochs)."""
    n_nodes = sum(g.num_nodes(nt) for nt in lm_types)
    return {k: v / n_nodes / epochs for k, v in counts.items()} if epochs else {}


#: ``stage3.inference_source`` -> how inference nodes get their embeddings
SOURCES = {"cache": JointInputs.from_cache, "encode": JointInputs.from_encode}
