"""Stage 2 (GNN warm-start) and the frozen-LM baseline: the GNN on fixed LM embeddings.

The LMs the stage starts from (stage 1's, or the pre-trained ones for the baseline) encode
every node once without gradient into the LM-embedding cache (skipped when it already holds
their embeddings); then the GNN encoder (RGCN, LM-GNN eq. 1) + the task's decoder (and
learnable embeddings of text-less types) train on them for ``stage2.epochs``, and the epoch
with the best validation ``task.primary`` metric is kept (the epoch loop's bookkeeping:
:class:`~.run.StageRun`).
"""
from __future__ import annotations

import itertools
import time
from typing import Optional

import torch

from .builders import build_learnable, build_lms, build_task_model
from .cross_fit import apply_out_of_fold
from .evaluation import describe, evaluate, prefixed
from ..run.stage_checkpoint import StageCheckpoint
from .base import StageTrainer
from .run import StageRun


class GNNTrainer(StageTrainer):
    """Trains the task head on the LM-embedding cache; ``fit()`` -> the stage's metrics:
    val metrics of the best epoch, test metrics of that model, ``best_epoch``, ``epochs``,
    ``steps_per_epoch``, ``losses`` (mean training loss per epoch), ``val_history`` (the
    scalar validation metrics of every epoch, e.g. ``[{"acc": .., "macro_f1": ..}, ...]``),
    ``lm`` (the folder or model the frozen LM came from; LM key -> that, with several LMs),
    ``pooling`` (LM key -> its resolved pooling),
    ``encode_s``, ``seconds``, ``peak_rss_mb_max_trainer``; ``out_of_fold`` (rows, folds)
    when stage 1 left out-of-fold embeddings of the training targets, which then replace
    its LMs' rows of those nodes (:func:`~.cross_fit.apply_out_of_fold`)."""

    def fit(self) -> dict:
        t0, env, lm_dir = time.time(), self.env, self.start.lm_dir
        lms = build_lms(env.encoders, self.cfg.model, lm_dir, env.device)
        enc = env.fill_cache(lms)
        encode_s = enc["seconds"] if enc else 0.0
        self.log(f"[{self.name}] encoded all nodes with the frozen LM in {encode_s:.1f}s"
                 if enc else f"[{self.name}] the LM-embedding cache already holds this LM's "
                 "embeddings")
        oof = apply_out_of_fold(env, lm_dir)  # stage 1's cross-fitting, when it ran
        if oof:
            self.log(f"[{self.name}] {oof['rows']} training targets read out-of-fold "
                     f"embeddings (stage 1's {oof['folds']} fold LMs)")
        learnable = build_learnable(self.g, env.encoders, lms.out_dim, self.name,
                                    self.cfg.model.embedding_lr)
        head, metrics = self.train_head(learnable, lms.out_dim)
        if oof:
            metrics["out_of_fold"] = oof
        sources = (StageCheckpoint(lm_dir).lm_sources(env.encoders.lm_paths) if lm_dir
                   else dict(env.encoders.lm_paths))  # LM key -> the folder it came from
        metrics.update(lm=next(iter(sources.values())) if len(sources) == 1 else sources,
                       pooling=lms.pooling(), encode_s=encode_s, seconds=time.time() - t0)
        return self.finish(metrics, head=head, learnable=learnable)

    def train_head(self, learnable, in_dim: int):
        """The epochs loop (:func:`fit_head` with ``stage2``'s settings)."""
        return fit_head(self, learnable, in_dim, self.cfg.stage2.epochs, self.name)


def fit_head(trainer: StageTrainer, learnable, in_dim: int, epochs: int, name: str,
             pseudo=None, salt: Optional[int] = None, graph_free: bool = False):
    """Train a fresh task head (GNN encoder + decoder, ``stage2``'s batch size, learning rate
    and weight decay) for ``epochs`` on the LM-embedding cache as it is; validate after each
    epoch and keep the best (:class:`~.run.StageRun`). ``name`` labels its progress bar,
    TensorBoard folder and progress checkpoint (``stage2``, or ``stage3_refit`` for stage 3's
    re-fit, ``stage3_glem<r>_gnn`` for GLEM's). ``pseudo``: pseudo-labelled targets joining
    every batch (:class:`~.pseudo_labels.PseudoLabels`; GLEM's M-step), or None. ``salt``:
    tells its batch generators apart from other loops of the stage (default 0 for the stage's
    own loop, 1 otherwise). ``graph_free``: an MLP head on each target's own embedding
    instead (fanouts ``[0]``; GLEM's LM classifier warmed on the LM's embeddings). Collective.
    Returns ``(head with the best epoch's weights, metrics)``: val metrics of the best epoch,
    test metrics of that head (node classification: with ``test_predictions``,
    :meth:`~.base.StageTrainer.finish`), ``best_epoch`` (0-based index of the kept epoch),
    ``epochs``, ``steps_per_epoch``, ``losses`` (mean per epoch), ``val_history``."""
    s, task, env = trainer.cfg.stage2, trainer.task, trainer.env
    head = build_task_model(trainer.cfg.model, task, trainer.g.canonical_etypes, in_dim,
                            trainer.cfg.seed, graph_free, env.device.gnn)
    fanouts = env.fanouts(graph_free)
    opt = torch.optim.Adam(head.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    steps = trainer.min_over_trainers(task.num_train_batches(s.batch_size))
    run = StageRun(trainer, epochs, range(1, epochs + 1), task.primary, {"head": head}, opt,
                   learnable, unit="epoch", steps_per_unit=steps, name=name, log_every=5)
    model = trainer.ddp(head)
    features = env.features(learnable)
    for epoch in run.steps():
        total = 0.0
        gen = trainer.epoch_generator(epoch - 1, salt=(0 if name == trainer.name else 1)
                                      if salt is None else salt)
        for i, batch in enumerate(itertools.islice(task.train_batches(
                fanouts, s.batch_size, gen, pseudo), steps)):
            h = features(batch.input_nodes)
            loss = model(batch.blocks, h, batch)
            trainer.optimizer_step(loss, opt, learnable, h)
            total += loss.item()
            run.scalars({"loss/train": loss.item()}, (epoch - 1) * steps + i + 1)
        val = evaluate(task, head, features, "val", fanouts, trainer.cfg.eval_batch_size)
        run.validated(epoch, val, head, learnable)
        run.record(epoch, total / max(1, steps), f"train loss {total / max(1, steps):.4f}  "
                   + describe(task.metric_names, prefixed("val", val)))
    run.best.restore(head, learnable)
    test = evaluate(task, head, features, "test", fanouts, trainer.cfg.eval_batch_size,
                    keep_predictions=True)
    metrics = {**prefixed("val", run.best.val), **prefixed("test", test),
               "best_epoch": run.best.epoch - 1, "epochs": epochs, "steps_per_epoch": steps,
               "losses": run.losses, "val_history": run.history}
    run.close(metrics)
    return head, metrics
