"""Stage 3: joint LM + GNN fine-tuning with back-prop on sampled nodes (LM-GNN §3.3).

Starts from the stage-1 LMs and the stage-2 GNN encoder + decoder (and learnable
embeddings). Each step samples a mini-batch of targets with its blocks; of the LM-encoded
input nodes at most ``lm_train_nodes`` (targets first, ``trainable_policy``) are encoded with
gradient, the others are inference nodes (:class:`~lmgnn_dist.trainer.inference_nodes.
InferenceNodes`: cache or no-grad encode). With-grad encodings are written back to the
LM-embedding cache.

The budget (epochs or steps), the learning-rate schedule (warm-up + decay, per parameter
group), gradient clipping, validation points and early stopping come from
:mod:`~lmgnn_dist.trainer.schedule`. Validation runs on the model the stage starts from (step
0) and at every validation point; the LMs + head with the best validation ``task.eval_metric``
are kept (:class:`~lmgnn_dist.evaluation.BestModel`), re-encode every node and are evaluated
on that (the reported val/test). With ``refit_gnn``, a fresh GNN head is first trained on the
embeddings of the LMs as training left them (:func:`~lmgnn_dist.trainer.gnn.fit_head`); those
LMs + that head are kept instead when their validation metric is higher than the best joint
model's (the stage-2 model included).

``mode: lm_only`` trains the LMs with a graph-free MLP head instead (the LM-only fine-tune of
LM-GNN's Table 1); :class:`~.task_lm.TaskLMTrainer` runs that as stage 1
(``stage1.objective: task``). ``pseudo_label_weight`` > 0 adds GLEM's pseudo-labelled targets
to every batch (:mod:`~.pseudo_labels`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from ..builders import build_learnable, build_lms, build_task_model, sparse_rows
from ..evaluation import BestModel, describe, evaluate, evaluate_splits, prefixed, scalar_metrics
from ..lm_cache import CacheStats
from ..model.joint import JointModel
from ..sampling import select_trainable_nodes_hetero
from .base import PhaseTimer, StageTrainer
from .checkpoints import Progress
from .gnn import fit_head
from .inference_nodes import InferenceNodes
from .joint_stats import JointInstrumentation
from .pseudo_labels import make_pseudo_labels
from .schedule import EarlyStopping, budget_steps, eval_steps, make_scheduler


class JointTrainer(JointInstrumentation, StageTrainer):
    """Stage 3; ``fit()`` -> val/test metrics of the kept model after the full re-encode,
    ``best_step`` (the best validated joint model; 0: the one the stage started from),
    ``lm_step`` and ``head`` (``joint`` or ``refit``: which LMs and head were kept),
    ``val_history`` (``[{"step": s, "acc": ..}, ...]``), ``stopped_early``, ``refit`` (the
    re-fit head's val/test and whether it was kept), ``loss_first``/``loss_last``/``losses``,
    ``steps`` (done), ``steps_per_epoch``, the instrumentation of :meth:`stats`, ``train_s`` (the stage's
    seconds before the re-fit, validation excluded), ``validation_s``, ``encode_s``,
    ``seconds``, ``peak_rss_mb_max_trainer``."""

    def settings(self):
        """The section this trainer runs with (a :class:`~lmgnn_dist.config.Stage3Config`)."""
        return self.cfg.stage3

    def fit(self) -> dict:
        t0, env, task = time.time(), self.env, self.task
        s = self.s = self.settings()
        graph_free = s.mode == "lm_only"
        lms = build_lms(env.encoders, self.cfg.model, self.start.lm_dir, env.device)
        head = build_task_model(self.cfg.model, task, self.g.canonical_etypes,
                                lms.out_dim, self.cfg.seed, graph_free, env.device.gnn)
        learnable = build_learnable(self.g, env.encoders, lms.out_dim, self.name,
                                    self.cfg.model.embedding_lr)
        head_dir: Optional[Path] = self.start.head_dir
        if head_dir is not None and not graph_free:
            head.load_state_dict(torch.load(head_dir / "gnn.pt", map_location="cpu"))
            if learnable is not None and (head_dir / "node_emb").exists():
                learnable.load(head_dir / "node_emb", self.ctx.is_main)
        model = JointModel(lms, head)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": head.parameters(), "lr": s.gnn_lr, "weight_decay": s.weight_decay}])
        per_epoch = self.min_over_trainers(task.num_train_batches(s.batch_size))
        total = budget_steps(s, per_epoch)
        evals = eval_steps(total, per_epoch, s.eval_every)
        sched = make_scheduler(opt, s, total)
        progress = Progress(env, self.name, self.gen)
        state = progress.load({"lms": lms, "head": head, "sched": sched}, opt, learnable)
        done = state.get("step", 0)
        ddp = self.ddp(model)
        # the cache must hold the embeddings of the LMs training starts from (a fresh job, or
        # LMs restored from a progress checkpoint, re-encode); graph-free training reads none
        cache = env.lm_cache(lms.out_dim)
        if not graph_free:
            env.fill_cache(lms, step=done)
        cache.stats = state.get("cache", CacheStats())
        cache.filled_by = None  # from now on rows come from LMs in training
        self.timer = PhaseTimer(state.get("time_split_s"))
        self.inference = InferenceNodes(
            cache, lambda nt: self.g.nodes[nt].data["input_ids"],
            {nt: self.g.num_nodes(nt) for nt in env.encoders.lm_of}, s,
            self.cfg.pipeline_depth, sparse_rows(self.g, self.cfg.model.sparse_attention),
            self.timer, self.gen, state.get("counts"))
        self.targets_seen = state.get("targets_seen", 0)
        losses, history = state.get("losses", []), state.get("val_history", [])
        best = BestModel.from_state(task.primary, state)
        early = EarlyStopping(s.patience, state.get("bad_evals", 0))
        self.fresh = done if not graph_free else None  # step whose LMs the whole cache holds
        self.val_s = state.get("validation_s", 0.0)  # seconds spent validating
        if done == 0 and not graph_free:  # the start model (stage 2's), on exact embeddings
            self.keep(0, self.validate(lms, head, learnable, 0, graph_free), best, history,
                      head, learnable, lms)
        self.pseudo = make_pseudo_labels(self, head, learnable, state.get("pseudo"))
        batches = self._endless_batches(s.batch_size, env.fanouts(graph_free))
        model.train()
        lms.set_dropout(s.lm_dropout)  # off: eval mode, gradients still flow (Stage3Config)
        mon = self.monitor(total, initial=done)
        stopped = False
        for step in range(done + 1, total + 1):
            with self.timer("sampling"):
                batch = next(batches)
            loss, n_in, n_train, norm = self.step(ddp, model, opt, sched, learnable, batch, step)
            losses.append(loss)
            mon.step(step, loss, grad_norm=norm, **{"lr/lm": sched.get_last_lr()[0],
                                                      "lr/head": sched.get_last_lr()[1]},
                     **self.step_scalars(n_in, n_train))
            if step % 10 == 1 or step == total:
                self.log(f"[{self.name}] step {step:4d}/{total}  loss {loss:.4f}  "
                         f"(LM input nodes {n_in}: {n_train} with grad, {n_in - n_train} "
                         "inference)")
            if step in evals:
                val = self.validate(lms, head, learnable, step, graph_free)
                improved = self.keep(step, val, best, history, head, learnable, lms)
                mon.scalars({f"val/{k}": v for k, v in scalar_metrics(val).items()}, step)
                stopped = early.update(improved) and step < total
            done = step
            if progress.due(step, total):
                progress.save(step, {"lms": lms, "head": head, "sched": sched}, opt, learnable,
                              {"losses": losses, "counts": self.inference.counts,
                               "targets_seen": self.targets_seen, "cache": cache.stats,
                               "time_split_s": dict(self.timer.seconds), "val_history": history,
                               "bad_evals": early.bad, "validation_s": self.val_s,
                               "pseudo": self.pseudo and self.pseudo.state(), **best.state()})
            if stopped:
                self.log(f"[{self.name}] early stop after step {step}: {early.bad} validations "
                         f"without improvement (best at step {best.epoch})")
                break
        train_s = time.time() - t0 - self.val_s  # validation is not training time
        stats = self.stats(train_s, done)
        mon.close(stats)
        if best.val is None:  # graph-free with no step: nothing validated yet
            self.keep(done, self.validate(lms, head, learnable, done, graph_free), best,
                      history, head, learnable, lms)
        primary, enc_s, refit = task.primary, 0.0, None
        if s.refit_gnn and not graph_free and done > 0:
            refit = self.refit(lms, learnable, done)
        if refit is not None and refit[1][f"val_{primary}"] > best.val[primary]:
            head, metrics = refit[0], {k: v for k, v in refit[1].items()
                                       if k.startswith(("val_", "test_"))}
            lm_step, head_from = done, "refit"
        else:  # the best validated LMs + joint head (step 0: the stage-2 model)
            best.restore(head, learnable, lms)
            if self.fresh != best.epoch:
                enc_s = env.fill_cache(lms, step=done, force=True)["seconds"]
                self.log(f"[{self.name}] re-encoded all nodes with the kept LMs (step "
                         f"{best.epoch}) in {enc_s:.1f}s")
            metrics = evaluate_splits(task, head, env.features(learnable),
                                      env.fanouts(graph_free), self.cfg.eval_batch_size)
            lm_step, head_from = best.epoch, "joint"
        if refit is not None:
            metrics["refit"] = dict(refit[2], kept=head_from == "refit")
            self.log(f"[{self.name}] GNN re-fit on the LMs of step {done}: val {primary} "
                     f"{refit[1][f'val_{primary}']:.4f}, best joint model (step {best.epoch}) "
                     f"{best.val[primary]:.4f}: keeping the {head_from} one")
        k = max(1, len(losses) // 5)  # max_steps=0 just evaluates the stage-2 model
        metrics.update({"best_step": best.epoch, "lm_step": lm_step, "head": head_from,
                        "val_history": history, "stopped_early": stopped,
                        "loss_first": sum(losses[:k]) / k if losses else None,
                        "loss_last": sum(losses[-k:]) / k if losses else None,
                        "losses": losses, "steps": done, "steps_per_epoch": per_epoch, **stats,
                        "train_s": train_s, "validation_s": self.val_s, "encode_s": enc_s,
                        "seconds": time.time() - t0})
        return self.finish(metrics, lms=lms, head=head, learnable=learnable)

    def validate(self, lms, head, learnable, step: int, graph_free: bool) -> dict:
        """Validation metrics of the current LMs + head (collective). Graph-free node
        classification re-encodes just this trainer's validation targets (all it reads);
        otherwise, with ``eval_source: encode``, every node is re-encoded first (the cache
        then holds these LMs' rows)."""
        t0, target = time.time(), getattr(self.task, "target", None)
        if graph_free and target is not None:
            ids = self.task.split_targets("val")
            emb = lms.encoder(target).encode_no_grad(self.g.nodes[target].data["input_ids"][ids],
                                                     self.cfg.encode_batch_size)
            self.env.cache.write(target, ids, emb, step)
            self.fresh = None  # the rest of the cache is older
        elif self.s.eval_source == "encode" or graph_free:
            if self.fresh != step:  # step 0: the stage's bar is not open yet
                self.env.fill_cache(lms, step=step, force=True, show_progress=step == 0)
            self.fresh = step
        val = evaluate(self.task, head, self.env.features(learnable), "val",
                       self.env.fanouts(graph_free), self.cfg.eval_batch_size)
        self.val_s += time.time() - t0
        return val

    def keep(self, step: int, val: dict, best: BestModel, history: list, head, learnable,
             lms) -> bool:
        """Record ``val`` of ``step`` and keep the model when it is the best so far."""
        history.append({"step": step, **scalar_metrics(val)})
        improved = best.update(step, val, head, learnable, lms)
        self.log(f"[{self.name}] step {step}: " + describe(self.task.metric_names,
                                                           prefixed("val", val))
                 + ("  (best so far)" if improved else f"  (best: step {best.epoch})"))
        return improved

    def refit(self, lms, learnable, step: int):
        """Train a fresh GNN head (stage 2's settings, ``refit_epochs``) on the embeddings of
        the LMs as training left them (after ``step``; the cache is re-encoded with them first
        unless it holds them). Collective. Returns ``(head, its metrics, summary)``; the
        summary (``val_*``/``test_*``, ``best_epoch``) goes into the stage metrics as
        ``refit``."""
        if self.fresh != step:
            self.env.fill_cache(lms, step=step, force=True)
            self.fresh = step
        epochs = self.s.refit_epochs or self.cfg.stage2.epochs
        head, m = fit_head(self, learnable, lms.out_dim, epochs, f"{self.name}_refit")
        summary = {"best_epoch": m["best_epoch"], "lm_step": step,
                   **{k: v for k, v in m.items() if k.startswith(("val_", "test_"))
                      and isinstance(v, float)}}
        return head, m, summary

    def step(self, ddp, model: JointModel, opt, sched, learnable, batch, step: int):
        """One optimizer step (clipped, scheduled); returns ``(loss, #LM input nodes,
        #with-grad nodes, gradient norm before clipping or None)``."""
        s, timer, inp, cache = self.s, self.timer, batch.input_nodes, self.env.cache
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
            norm = self.optimizer_step(loss, opt, learnable, h_fixed, s.max_grad_norm, sched)
        with timer("communication"):
            for nt in lm_types:
                cache.write(nt, inp[nt][train_idx[nt]], h_train[nt], step)
        n_train = sum(len(i) for i in train_idx.values())
        self.inference.counts["with_grad"] += n_train
        self.targets_seen += self.task.targets_in(batch)
        if s.refresh_batch_size > 0:
            self.inference.refresh(model.lms, step)
        return loss.item(), sum(len(inp[nt]) for nt in lm_types), n_train, norm

    def _endless_batches(self, batch_size, fanouts):
        while True:
            yield from self.task.train_batches(fanouts, batch_size, self.gen, self.pseudo)
