"""Stage 3: joint LM + GNN fine-tuning with back-prop on sampled nodes (LM-GNN §3.3).

Starts from the stage-1 LMs and the stage-2 GNN encoder + decoder (and learnable
embeddings). Each step samples a mini-batch of targets with its blocks; of the LM-encoded
input nodes at most ``lm_train_nodes`` (targets first, ``trainable_policy``) are encoded with
gradient, the others are inference nodes (:class:`~lmgnn_dist.trainer.inference_nodes.
InferenceNodes`: cache or no-grad encode). With-grad encodings are written back to the
LM-embedding cache. After ``max_steps`` the fine-tuned LMs re-encode every node and the head
is evaluated on that. ``mode: lm_only`` trains the LMs with a graph-free MLP head instead
(the LM-only fine-tune of LM-GNN's Table 1).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from ..builders import build_learnable, build_lms, build_task_model, sparse_rows
from ..dist_init import all_reduce
from ..evaluation import evaluate_splits
from ..lm_cache import CacheStats
from ..model.joint import JointModel
from ..sampling import select_trainable_nodes_hetero
from .base import PhaseTimer, StageTrainer
from .checkpoints import Progress
from .inference_nodes import InferenceNodes


class JointTrainer(StageTrainer):
    """Stage 3; ``fit()`` -> val/test metrics after the full re-encode, ``loss_first``/
    ``loss_last``/``losses``, ``steps``, the instrumentation of :meth:`stats`, ``train_s``,
    ``encode_s``, ``seconds``, ``peak_rss_mb_max_trainer``."""

    def fit(self) -> dict:
        s, t0, env = self.cfg.stage3, time.time(), self.env
        graph_free = s.mode == "lm_only"
        lms = build_lms(env.encoders, self.cfg.model, self.start.lm_dir, env.device)
        head = build_task_model(self.cfg.model, self.task, self.g.canonical_etypes,
                                lms.out_dim, self.cfg.seed, graph_free)
        learnable = build_learnable(self.g, env.encoders, lms.out_dim, self.name,
                                    self.cfg.model.embedding_lr)
        head_dir: Optional[Path] = self.start.head_dir
        if head_dir is not None and not graph_free:
            head.load_state_dict(torch.load(head_dir / "gnn.pt"))
            if learnable is not None and (head_dir / "node_emb").exists():
                learnable.load(head_dir / "node_emb", self.ctx.is_main)
        model = JointModel(lms, head)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": head.parameters(), "lr": s.gnn_lr, "weight_decay": s.weight_decay}])
        progress = Progress(env, self.name, self.gen)
        state = progress.load({"lms": lms, "head": head}, opt, learnable)
        ddp = self.ddp(model)
        # the cache must hold the embeddings of the LMs training starts from (a fresh job, or
        # LMs restored from a progress checkpoint, re-encode)
        env.fill_cache(lms, step=state.get("step", 0))
        cache = env.cache
        cache.stats = state.get("cache", CacheStats())
        cache.filled_by = None  # from now on rows come from LMs in training
        self.timer = PhaseTimer(state.get("time_split_s"))
        self.inference = InferenceNodes(
            cache, lambda nt: self.g.nodes[nt].data["input_ids"],
            {nt: self.g.num_nodes(nt) for nt in env.encoders.lm_of}, s,
            self.cfg.pipeline_depth, sparse_rows(self.g, self.cfg.model.sparse_attention),
            self.timer, self.gen, state.get("counts"))
        self.targets_seen = state.get("targets_seen", 0)
        losses = state.get("losses", [])
        batches = self._endless_batches(s.batch_size, env.fanouts(graph_free))
        model.train()
        lms.set_dropout(s.lm_dropout)  # off: eval mode, gradients still flow (Stage3Config)
        mon = self.monitor(s.max_steps, initial=state.get("step", 0))
        for step in range(state.get("step", 0) + 1, s.max_steps + 1):
            with self.timer("sampling"):
                batch = next(batches)
            loss, n_in, n_train = self.step(ddp, model, opt, learnable, batch, step)
            losses.append(loss)
            mon.step(step, loss, **self.step_scalars(n_in, n_train))
            if step % 10 == 1 or step == s.max_steps:
                self.log(f"[stage3] step {step:4d}/{s.max_steps}  loss {loss:.4f}  "
                         f"(LM input nodes {n_in}: {n_train} with grad, {n_in - n_train} "
                         "inference)")
            if progress.due(step, s.max_steps):
                progress.save(step, {"lms": lms, "head": head}, opt, learnable,
                              {"losses": losses, "counts": self.inference.counts,
                               "targets_seen": self.targets_seen, "cache": cache.stats,
                               "time_split_s": dict(self.timer.seconds)})
        train_s = time.time() - t0
        stats = self.stats(train_s)
        mon.close(stats)
        enc = env.fill_cache(lms, step=s.max_steps, force=True)
        self.log(f"[stage3] re-encoded all nodes with the fine-tuned LM in {enc['seconds']:.1f}s")
        features, fanouts = env.features(learnable), env.fanouts(graph_free)
        k = max(1, len(losses) // 5)  # max_steps=0 just evaluates the stage-2 model
        metrics = {**evaluate_splits(self.task, head, features, fanouts,
                                     self.cfg.eval_batch_size),
                   "loss_first": sum(losses[:k]) / k if losses else None,
                   "loss_last": sum(losses[-k:]) / k if losses else None,
                   "losses": losses, "steps": s.max_steps, **stats,
                   "train_s": train_s, "encode_s": enc["seconds"], "seconds": time.time() - t0}
        return self.finish(metrics, lms=lms, head=head, learnable=learnable)

    def step(self, ddp, model: JointModel, opt, learnable, batch, step: int):
        """One optimizer step; returns ``(loss, #LM input nodes, #with-grad nodes)``."""
        s, timer, inp, cache = self.cfg.stage3, self.timer, batch.input_nodes, self.env.cache
        lm_types = [nt for nt in self.env.encoders.lm_of if nt in inp]
        with timer("communication"):
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
        h_infer = {nt: self.inference(model.lms, nt, inp[nt][infer_idx[nt]], step)
                   for nt in lm_types}
        with timer("communication"):
            tokens = {nt: self.g.nodes[nt].data["input_ids"][inp[nt][train_idx[nt]]]
                      for nt in lm_types}
        model.timings.clear()
        loss, h_train = ddp(batch.blocks, tokens, train_idx, infer_idx, h_infer, h_fixed, batch)
        timer.add("lm_grad_forward", model.timings["lm"])
        timer.add("gnn_forward", model.timings["head"])
        with timer("backward_optimizer"):
            self.optimizer_step(loss, opt, learnable, h_fixed)
        with timer("communication"):
            for nt in lm_types:
                cache.write(nt, inp[nt][train_idx[nt]], h_train[nt], step)
        n_train = sum(len(i) for i in train_idx.values())
        self.inference.counts["with_grad"] += n_train
        self.targets_seen += self.task.targets_in(batch)
        if s.refresh_batch_size > 0:
            self.inference.refresh(model.lms, step)
        return loss.item(), sum(len(inp[nt]) for nt in lm_types), n_train

    def step_scalars(self, n_in: int, n_train: int) -> dict:
        """This trainer's per-step TensorBoard scalars: LM encodings so far (with grad, no
        grad, cache hits, refresh) and its cache hit rate so far (no collective)."""
        c = self.env.cache.stats
        looked_up = c.hits + c.misses + c.stale_misses
        return {"lm_input_nodes/with_grad": n_train, "lm_input_nodes/inference": n_in - n_train,
                **{f"lm_encodings/{k}": v for k, v in self.inference.counts.items()},
                "cache/hit_rate": c.hits / looked_up if looked_up else None}

    def stats(self, train_s: float) -> dict:
        """Instrumentation summed over trainers (collective): LM encodings (total and per
        LM-encoded node, per epoch of the training targets), cache counters, time split
        (seconds, max over trainers) and mean step time."""
        s, counts = self.cfg.stage3, self.inference.counts
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
                "time_split_s": split, "train_step_s": train_s / max(1, s.max_steps)}

    def _endless_batches(self, batch_size, fanouts):
        while True:
            yield from self.task.train_batches(fanouts, batch_size, self.gen)
