"""Stage 1 with ``stage1.objective: task``: the task-tuned LM (GraphStorm's LM fine-tuned on
the labels before the GNN; LM-GNN Table 1's LM-only row)."""
from __future__ import annotations

from ..config import Stage3Config
from .gnn import fit_head
from .joint import JointTrainer


class TaskLMTrainer(JointTrainer):
    """Stage 1 with ``stage1.objective: task``: the LMs fine-tuned on the task's training
    targets with a graph-free MLP head (``mode: lm_only`` with stage 1's budget, schedule,
    batch size and learning rates; ``decoder_lr`` is the head's). Its val/test metrics are
    the LM-only row of LM-GNN's Table 1; stage 2 starts from its LMs. With
    ``stage1.cross_fit_folds`` K >= 2 it then fits K fold LMs and keeps their out-of-fold
    embeddings of the training targets for stage 2 (:mod:`.cross_fit`; metrics
    ``cross_fit``). With ``stage1.head_warmup_epochs`` E >= 1 every fresh head is first fitted
    alone on the frozen start LMs' embeddings (LP-FT; metrics ``head_warmup``: the warmed
    head's val/test and kept epoch, of the stage's own LMs)."""

    head_warmup = None  #: the stage's own head warm-up metrics (None: off, or not yet run)

    def settings(self) -> Stage3Config:
        s1 = self.cfg.stage1
        return Stage3Config(
            mode="lm_only", max_steps=s1.max_steps, epochs=s1.epochs, schedule=s1.schedule,
            warmup_ratio=s1.warmup_ratio, max_grad_norm=s1.max_grad_norm,
            clip_per_group=s1.clip_per_group,
            eval_every=s1.eval_every, patience=s1.patience, batch_size=s1.batch_size,
            lm_train_nodes=s1.batch_size, lm_lr=s1.lm_lr, gnn_lr=s1.decoder_lr,
            weight_decay=s1.weight_decay, refit_gnn=False, label_smoothing=s1.label_smoothing)

    def build_models(self):
        """The start LMs and a fresh MLP head -- with ``head_warmup_epochs``, the head fitted
        alone on the start LMs' embeddings (the cache filled with them first; a full encode).
        Collective."""
        lms, head, learnable = super().build_models()
        epochs = self.cfg.stage1.head_warmup_epochs
        if epochs:
            self.env.fill_cache(lms)  # makes the cache when the stage has none yet
            warm, m = fit_head(self, learnable, lms.out_dim, epochs,
                               f"{self.name}_head_warmup", salt=1, graph_free=True)
            head.load_state_dict(warm.state_dict())
            primary = self.task.primary
            self.log(f"[{self.name}] MLP head warmed on the frozen LMs' embeddings for "
                     f"{epochs} epochs: val {primary} {m[f'val_{primary}']:.4f} (epoch "
                     f"{m['best_epoch'] + 1})", console=True)
            if self.head_warmup is None:  # the stage's own head (cross-fitting's come later)
                self.head_warmup = {"epochs": epochs, "best_epoch": m["best_epoch"],
                                    **{k: v for k, v in m.items()
                                       if k.startswith(("val_", "test_"))
                                       and isinstance(v, float)}}
        return lms, head, learnable

    def after_training(self, metrics: dict):
        if self.head_warmup is not None:
            metrics["head_warmup"] = self.head_warmup
        if self.cfg.stage1.cross_fit_folds < 2:
            return None
        from .cross_fit import cross_fit

        metrics["cross_fit"], rank_files = cross_fit(self)
        return rank_files
