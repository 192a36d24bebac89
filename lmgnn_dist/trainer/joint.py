"""Stage 3: joint LM + GNN fine-tuning with back-prop on sampled nodes (LM-GNN §3.3).

Starts from the stage-1 LMs and the stage-2 GNN encoder + decoder (and learnable
embeddings). Each step samples a mini-batch of targets with its blocks; of the LM-encoded
input nodes at most ``lm_train_nodes`` (targets first, ``trainable_policy``) are encoded with
gradient, the others are inference nodes (:class:`~lmgnn_dist.trainer.joint_inputs.
JointInputs`: which nodes get gradient, cache or no-grad encode, write-back, refresh,
counters). A step reads: sample -> ``inputs.prepare`` -> forward -> optimizer step ->
``inputs.commit`` -> ``run.record`` (the loop's bookkeeping: :class:`~.run.StageRun`).

The budget (epochs or steps), the learning-rate schedule (warm-up + decay, per parameter
group), gradient clipping, validation points and early stopping come from
:mod:`~lmgnn_dist.trainer.schedule`. Validation runs on the model the stage starts from (step
0) and at every validation point; the LMs + head with the best validation ``task.eval_metric``
are kept (:class:`~lmgnn_dist.trainer.evaluation.BestModel`), re-encode every node and are evaluated
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

from .builders import build_learnable, build_lms, build_task_model
from .evaluation import describe, evaluate, evaluate_splits, prefixed
from ..model.aux_head import LMAuxHead
from ..model.joint import JointModel
from .base import StageTrainer
from .gnn import fit_head
from .joint_inputs import JointInputs
from .pseudo_labels import make_pseudo_labels
from .run import StageRun
from .schedule import budget_steps, eval_steps, make_scheduler


def joint_optimizer(lms: torch.nn.Module, head: torch.nn.Module, s,
                    aux: Optional[torch.nn.Module] = None) -> torch.optim.AdamW:
    """AdamW over two parameter groups, in this order: the LMs (``s.lm_lr``,
    ``s.weight_decay``) and the head with the auxiliary LM classifier ``aux`` when given
    (``s.gnn_lr``, ``s.head_weight_decay``, or ``s.weight_decay`` when that is None); ``s`` a
    :class:`~lmgnn_dist.config.Stage3Config`."""
    head_wd = s.weight_decay if s.head_weight_decay is None else s.head_weight_decay
    head_params = list(head.parameters()) + (list(aux.parameters()) if aux is not None else [])
    return torch.optim.AdamW([
        {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
        {"params": head_params, "lr": s.gnn_lr, "weight_decay": head_wd}])


class JointTrainer(StageTrainer):
    """Stage 3; ``fit()`` -> val/test metrics of the kept model after the full re-encode,
    ``best_step`` (the best validated joint model; 0: the one the stage started from),
    ``lm_step`` and ``head`` (``joint`` or ``refit``: which LMs and head were kept),
    ``val_history`` (``[{"step": s, "acc": ..}, ...]``), ``stopped_early``, ``refit`` (the
    re-fit head's val/test, its ``val_history`` and whether it was kept), ``loss_first``/``loss_last``/``losses``,
    ``steps`` (done), ``steps_per_epoch``, the instrumentation of
    :meth:`~.joint_inputs.JointInputs.stats`, ``train_s`` (the stage's seconds before the
    re-fit, validation and the start's cache fill excluded), ``validation_s``,
    ``cache_fill_s`` (filling the cache with the start LMs: a full encode when the job did not
    run stage 2, else ~0), ``encode_s``, ``seconds``,
    ``peak_rss_mb_max_trainer``."""

    def settings(self):
        """The section this trainer runs with (a :class:`~lmgnn_dist.config.Stage3Config`)."""
        return self.cfg.stage3

    def fit(self) -> dict:
        t0 = time.time()
        s = self.s = self.settings()
        self.graph_free = s.mode == "lm_only"
        lms, head, learnable = self.build_models()
        run, stats = self.train(lms, head, learnable)
        metrics = self.select(run, lms, head, learnable)
        metrics.update({**run.summary(), **stats})
        kept, rank_files = self.kept_head, self.after_training(metrics)
        metrics["seconds"] = time.time() - t0
        return self.finish(metrics, lms=lms, head=kept, learnable=learnable,
                           rank_files=rank_files)

    def after_training(self, metrics: dict):
        """Work after the kept model is chosen and before the checkpoint is written (may add
        to ``metrics``); returns ``(folder, this trainer's dict)`` for the checkpoint
        (:func:`~.checkpoints.write_stage_checkpoint`'s ``rank_files``) or None. Stage 1's
        cross-fitting (:class:`~.task_lm.TaskLMTrainer`); nothing here."""
        return None

    def train(self, lms, head, learnable, teacher=None, name: Optional[str] = None):
        """The stage's optimizer steps under :attr:`s` (``settings()``; graph-free when
        :attr:`graph_free`) on ``lms`` + ``head`` (+ ``learnable``), validated at the
        schedule's points (the start model first, unless graph-free). ``teacher``: ``(head,
        fanouts)`` that labels the pseudo-labelled targets (default: ``head`` itself with the
        graph's fanouts, the start model); ``name``: the loop's label (progress bar,
        TensorBoard, progress checkpoint; default the stage's). Collective. Returns ``(run,
        stats)``: the :class:`~.run.StageRun` (its best model not yet restored) and
        ``steps_per_epoch``, the instrumentation of :meth:`~.joint_inputs.JointInputs.stats`,
        ``train_s`` (validation and the start's cache fill excluded), ``validation_s``,
        ``cache_fill_s``."""
        t0, env, task, s, graph_free = time.time(), self.env, self.task, self.s, self.graph_free
        aux = None
        if s.lm_aux_weight > 0 and not graph_free:  # config: node classification only
            aux = LMAuxHead(task.target, lms.out_dim, len(task.classes),
                            s.lm_aux_weight).to(env.device.lm)
        opt = joint_optimizer(lms, head, s, aux)
        per_epoch = self.min_over_trainers(task.num_train_batches(s.batch_size))
        total = budget_steps(s, per_epoch)
        sched = make_scheduler(opt, s, total)
        run = StageRun(self, total, eval_steps(total, per_epoch, s.eval_every), task.primary,
                       {"lms": lms, "head": head, "sched": sched,
                        **({"aux": aux} if aux is not None else {})}, opt, learnable,
                       patience=s.patience, name=name)
        env.lm_cache(lms.out_dim)
        fill_s = time.time()
        if not graph_free:  # the cache holds the LMs training starts from (key rule)
            env.fill_cache(lms, step=run.done)  # a full encode unless the job's stage 2 left it
        fill_s = time.time() - fill_s
        inputs = self.inputs = JointInputs(env, s, self.gen, run.state)
        model = JointModel(lms, head, timer=inputs.timer, aux=aux)
        ddp = self.ddp(model)
        self.val_s = run.state.get("validation_s", 0.0)  # seconds spent validating
        if run.done == 0 and not graph_free:  # the start model (stage 2's), exact embeddings
            self.validate(run, 0, lms, head, learnable)
        self.pseudo = make_pseudo_labels(self, *(teacher or (head, env.fanouts())), learnable,
                                         run.state.get("pseudo"))
        batches = run.batches(s.batch_size, env.fanouts(graph_free), self.pseudo)
        model.train()
        lms.set_dropout(s.lm_dropout)  # off: eval mode, gradients still flow (Stage3Config)
        for step in run.steps(lambda: dict(inputs.state(), validation_s=self.val_s,
                                           pseudo=self.pseudo and self.pseudo.state())):
            with inputs.timer("sampling"):
                batch = next(batches)
            p = inputs.prepare(batch, lms, learnable, step)
            loss, h_train = ddp(batch.blocks, *p.model_args(), batch)
            with inputs.timer("backward_optimizer"):
                norm = self.optimizer_step(loss, opt, learnable, p.h_fixed, s.max_grad_norm,
                                           sched, per_group=s.clip_per_group)
            inputs.commit(p, h_train, lms, batch, step)
            lr = sched.get_last_lr()
            run.record(step, loss.item(), f"loss {loss.item():.4f}  (LM input nodes "
                       f"{p.num_inputs}: {p.num_with_grad} with grad, "
                       f"{p.num_inputs - p.num_with_grad} inference)", grad_norm=norm,
                       **{"lr/lm": lr[0], "lr/head": lr[1]}, **inputs.step_scalars(p))
            if run.validation_due(step):
                self.validate(run, step, lms, head, learnable)
        # neither validation nor the start's cache fill is training time
        train_s = time.time() - t0 - self.val_s - fill_s
        stats = inputs.stats(train_s, run.done)
        run.close(stats)
        if run.best.val is None:  # graph-free with no step: nothing validated yet
            self.validate(run, run.done, lms, head, learnable)
        return run, {"steps_per_epoch": per_epoch, **stats, "train_s": train_s,
                     "validation_s": self.val_s, "cache_fill_s": fill_s}

    def build_models(self):
        """The LMs (stage 1's or the configured ones), the task head (stage 2's GNN encoder
        + decoder; a fresh MLP head when graph-free) and the learnable embeddings (stage
        2's rows) the stage starts from."""
        env = self.env
        lms = build_lms(env.encoders, self.cfg.model, self.start.lm_dir, env.device,
                        trains=True)
        head = build_task_model(self.cfg.model, self.task, self.g.canonical_etypes,
                                lms.out_dim, self.cfg.seed, self.graph_free, env.device.gnn)
        learnable = build_learnable(self.g, env.encoders, lms.out_dim, self.name,
                                    self.cfg.model.embedding_lr)
        head_dir: Optional[Path] = self.start.head_dir
        if head_dir is not None and not self.graph_free:
            head.load_state_dict(torch.load(head_dir / "gnn.pt", map_location="cpu"))
            if learnable is not None and (head_dir / "node_emb").exists():
                learnable.load(head_dir / "node_emb", self.ctx.is_main)
        head.label_smoothing = self.s.label_smoothing  # the stage's training loss only
        return lms, head, learnable

    def validate(self, run: StageRun, step: int, lms, head, learnable) -> bool:
        """Validate the current LMs + head after ``step`` (collective) and let ``run`` keep
        them when best. Graph-free node classification re-encodes just this trainer's
        validation targets (all it reads); otherwise, with ``eval_source: encode``, the cache
        is first made to hold these LMs' embeddings (re-encoded unless it does). Returns
        whether the model improved."""
        t0, target = time.time(), getattr(self.task, "target", None)
        if self.graph_free and target is not None:
            ids = self.task.split_targets("val")
            emb = lms.encoder(target).encode_no_grad(self.g.nodes[target].data["input_ids"][ids],
                                                     self.cfg.encode_batch_size)
            self.env.cache.write(target, ids, emb, step)
        elif self.s.eval_source == "encode" or self.graph_free:
            self.env.fill_cache(lms, step=step, show_progress=step == 0)  # step 0: no bar yet
        val = evaluate(self.task, head, self.env.features(learnable), "val",
                       self.env.fanouts(self.graph_free), self.cfg.eval_batch_size)
        self.val_s += time.time() - t0
        return run.validated(step, val, head, learnable, lms,
                             describe(self.task.metric_names, prefixed("val", val)))

    def select(self, run: StageRun, lms, head, learnable) -> dict:
        """The model the stage keeps, evaluated on val/test after the full re-encode: the
        best validated joint model, or with ``refit_gnn`` a fresh GNN head trained on the
        LMs as training left them when its validation metric is higher. Sets
        :attr:`kept_head`; returns the metrics (``lm_step``, ``head``, ``refit``,
        ``encode_s``)."""
        best, primary, done, env = run.best, self.task.primary, run.done, self.env
        refit = None
        if self.s.refit_gnn and not self.graph_free and done > 0:
            refit = self.refit(lms, learnable, done)
        enc_s = 0.0
        if refit is not None and refit[1][f"val_{primary}"] > best.val[primary]:
            self.kept_head, lm_step, head_from = refit[0], done, "refit"
            metrics = {k: v for k, v in refit[1].items() if k.startswith(("val_", "test_"))}
        else:  # the best validated LMs + joint head (step 0: the stage-2 model)
            best.restore(head, learnable, lms)
            enc = env.fill_cache(lms, step=done)  # unless the cache holds these LMs' rows
            if enc:
                enc_s = enc["seconds"]
                self.log(f"[{self.name}] re-encoded all nodes with the kept LMs (step "
                         f"{best.epoch}) in {enc_s:.1f}s")
            metrics = evaluate_splits(self.task, head, env.features(learnable),
                                      env.fanouts(self.graph_free), self.cfg.eval_batch_size)
            self.kept_head, lm_step, head_from = head, best.epoch, "joint"
        if refit is not None:
            metrics["refit"] = dict(refit[2], kept=head_from == "refit")
            self.log(f"[{self.name}] GNN re-fit on the LMs of step {done}: val {primary} "
                     f"{refit[1][f'val_{primary}']:.4f}, best joint model (step {best.epoch}) "
                     f"{best.val[primary]:.4f}: keeping the {head_from} one")
        return dict(metrics, lm_step=lm_step, head=head_from, encode_s=enc_s)

    def refit_epochs(self) -> int:
        """Epochs of a GNN fit on the LMs stage 3 trained (``refit_epochs``, else
        ``stage2.epochs``): the re-fit's, GLEM's GNN phases'."""
        return self.cfg.stage3.refit_epochs or self.cfg.stage2.epochs

    def refit(self, lms, learnable, step: int):
        """Train a fresh GNN head (stage 2's settings, ``refit_epochs``) on the embeddings of
        the LMs as training left them (after ``step``; the cache is re-encoded with them first
        unless it holds them). Collective. Returns ``(head, its metrics, summary)``; the
        summary (``val_*``/``test_*``, ``best_epoch``, ``val_history`` per re-fit epoch) goes
        into the stage metrics as ``refit``."""
        self.env.fill_cache(lms, step=step)
        head, m = fit_head(self, learnable, lms.out_dim, self.refit_epochs(), f"{self.name}_refit")
        summary = {"best_epoch": m["best_epoch"], "lm_step": step,
                   **{k: v for k, v in m.items() if k.startswith(("val_", "test_"))
                      and isinstance(v, float)}, "val_history": m["val_history"]}
        return head, m, summary
