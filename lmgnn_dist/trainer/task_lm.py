"""Stage 1 with ``stage1.objective: task``: the task-tuned LM (GraphStorm's LM fine-tuned on
the labels before the GNN; LM-GNN Table 1's LM-only row)."""
from __future__ import annotations

from ..config import Stage3Config
from .joint import JointTrainer


class TaskLMTrainer(JointTrainer):
    """Stage 1 with ``stage1.objective: task``: the LMs fine-tuned on the task's training
    targets with a graph-free MLP head (``mode: lm_only`` with stage 1's budget, schedule,
    batch size and learning rates; ``decoder_lr`` is the head's). Its val/test metrics are
    the LM-only row of LM-GNN's Table 1; stage 2 starts from its LMs. With
    ``stage1.cross_fit_folds`` K >= 2 it then fits K fold LMs and keeps their out-of-fold
    embeddings of the training targets for stage 2 (:mod:`.cross_fit`; metrics
    ``cross_fit``)."""

    def settings(self) -> Stage3Config:
        s1 = self.cfg.stage1
        return Stage3Config(
            mode="lm_only", max_steps=s1.max_steps, epochs=s1.epochs, schedule=s1.schedule,
            warmup_ratio=s1.warmup_ratio, max_grad_norm=s1.max_grad_norm,
            clip_per_group=s1.clip_per_group,
            eval_every=s1.eval_every, patience=s1.patience, batch_size=s1.batch_size,
            lm_train_nodes=s1.batch_size, lm_lr=s1.lm_lr, gnn_lr=s1.decoder_lr,
            weight_decay=s1.weight_decay, refit_gnn=False, label_smoothing=s1.label_smoothing)

    def after_training(self, metrics: dict):
        if self.cfg.stage1.cross_fit_folds < 2:
            return None
        from .cross_fit import cross_fit

        metrics["cross_fit"], rank_files = cross_fit(self)
        return rank_files
