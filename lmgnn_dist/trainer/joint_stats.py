"""What stage 3 reports about itself: per-step TensorBoard scalars and the stage's
instrumentation (LM encodings per kind, LM-embedding cache counters, time split), mixed into
:class:`~lmgnn_dist.trainer.joint.JointTrainer`."""
from __future__ import annotations

import torch
import torch.distributed as dist

from ..dist_init import all_reduce


class JointInstrumentation:
    """Reads the joint trainer's ``env.cache.stats``, ``inference.counts``, ``timer``,
    ``targets_seen``, ``task`` and ``g``."""

    def step_scalars(self, n_in: int, n_train: int) -> dict:
        """This trainer's per-step TensorBoard scalars: LM encodings so far (with grad, no
        grad, cache hits, refresh) and its cache hit rate so far (no collective)."""
        c = self.env.cache.stats
        looked_up = c.hits + c.misses + c.stale_misses
        return {"lm_input_nodes/with_grad": n_train, "lm_input_nodes/inference": n_in - n_train,
                **{f"lm_encodings/{k}": v for k, v in self.inference.counts.items()},
                "cache/hit_rate": c.hits / looked_up if looked_up else None}

    def stats(self, train_s: float, steps: int) -> dict:
        """Instrumentation summed over trainers (collective): LM encodings (total and per
        LM-encoded node, per epoch of the training targets), cache counters, time split
        (seconds, max over trainers) and mean step time."""
        counts = self.inference.counts
        keys = list(counts)
        counts = dict(zip(keys, (int(v) for v in all_reduce(
            torch.tensor([counts[k] for k in keys])).tolist())))
        c = self.env.cache.stats
        cache = dict(zip(["hits", "misses", "stale_misses", "rows_written"], (int(v) for v in
                     all_reduce(torch.tensor([c.hits, c.misses, c.stale_misses,
                                              c.rows_written])).tolist())))
        looked_up = cache["hits"] + cache["misses"] + cache["stale_misses"]
        cache["hit_rate"] = cache["hits"] / looked_up if looked_up else None
        phases = sorted(self.timer.seconds)
        split = dict(zip(phases, all_reduce(torch.tensor(
            [self.timer.seconds[p] for p in phases]), dist.ReduceOp.MAX).tolist()))
        n_train, seen = all_reduce(torch.tensor(
            [self.task.num_train_targets(), self.targets_seen])).tolist()
        epochs = seen / max(1, n_train)  # passes over the training targets, partial batches counted
        n_nodes = sum(self.g.num_nodes(nt) for nt in self.env.encoders.lm_of)
        per_node_epoch = {k: v / n_nodes / epochs for k, v in counts.items()} if epochs else {}
        return {"lm_encodings": counts, "epochs": epochs,
                "lm_encodings_per_node_per_epoch": per_node_epoch, "cache": cache,
                "time_split_s": split, "train_step_s": train_s / max(1, steps)}
