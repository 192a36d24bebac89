"""Stage 3 with ``stage3.mode: glem``: GLEM's alternation of the LM and the GNN (Zhao et al.,
ICLR 2023, "Learning on Large-scale Text-attributed Graphs via Variational Inference", §4:
the E-step trains the LM on the gold labels + the GNN's pseudo-labels, eq. 8; the M-step
trains the GNN on the gold labels + the LM's pseudo-labels, eq. 10).

The stage starts from stage 2's LMs and GNN (round 0, validated first) and runs
``stage3.glem_rounds`` rounds, LM first (GLEM's ``LM-first`` order):

1. **LM phase** (E-step): the GNN of the round before (round 1: stage 2's) labels the target
   nodes in neither the training nor the validation split, on the cache it was trained on
   (full neighbourhoods; kept at teacher probability >= ``pseudo_label_threshold``). The LMs
   and a graph-free MLP head (one head, kept across rounds; before round 1 it is fit on the
   start LMs' embeddings, ``stage2``'s settings and epochs, so the first phase does not learn
   through a random head) train on batches of gold targets, each joined by
   ``pseudo_label_ratio`` pseudo-labelled ones per gold one at loss weight
   ``pseudo_label_weight``, every target encoded with gradient, for stage 3's budget
   (``epochs`` / ``max_steps`` of gold targets, per phase), schedule and learning rates
   (``lm_lr``; ``gnn_lr`` is the MLP head's); the phase keeps its best validated LMs (the MLP
   head on the LM alone, :meth:`~.joint.JointTrainer.select`).
2. **Re-encode**: every node with those LMs, without gradient, into the LM-embedding cache.
3. **GNN phase** (M-step): the MLP head labels the same pool from the LM's own embeddings; a
   fresh GNN encoder + decoder (``stage2``'s settings, ``stage3.refit_epochs`` or
   ``stage2.epochs`` epochs) trains on gold + those pseudo-labels (at loss weight
   ``glem_gnn_pseudo_weight``, default ``pseudo_label_weight``; 0: gold alone) and keeps its
   best validated epoch.

The round whose GNN has the best validation metric is kept (round 0: stage 2's model, as the
joint mode's step 0); its LMs + GNN are the stage's checkpoint and its val/test the stage's.
Validation targets never join a pseudo-labelled pool (:meth:`~lmgnn_dist.tasks.node.
NodeClassificationTask.unlabelled_targets`). The phases write no progress checkpoints: a
restarted job runs the stage again from its start.
"""
from __future__ import annotations

import dataclasses
import math
import time

from ..config import Stage3Config
from .evaluation import BestModel, describe, evaluate, evaluate_splits, prefixed, scalar_metrics
from .gnn import fit_head
from .joint import JointTrainer
from .joint_inputs import per_node_per_epoch
from .pseudo_labels import make_pseudo_labels
from .timing import PhaseTimer


class GLEMTrainer(JointTrainer):
    """Stage 3 in mode ``glem`` (module docstring); ``fit()`` -> the kept round's val/test
    metrics, ``best_step`` / ``lm_step`` (the kept round; 0: stage 2's model), ``head``
    (``glem``, or ``joint`` when round 0 was kept), ``val_history`` (``[{"step": round,
    <metric>: ..}, ...]``, the GNN of each round), ``rounds`` (per round: its LM phase's and
    GNN phase's val/test ``acc``, how many pseudo-labels each got, their seconds), ``steps``
    (LM-phase optimizer steps, all rounds), ``steps_per_epoch``, ``epochs`` (passes over the
    gold targets, all rounds), ``lm_encodings`` (summed over the LM phases, plus
    ``full_reencode``: one no-grad encode of every LM-typed node per round) and
    ``lm_encodings_per_node_per_epoch``, ``mlp_warm`` (the MLP head's val/test after its
    warm-up), ``train_s`` (seconds of the warm-up and the rounds, validation of the LM phases
    and of round 0 and the final evaluation left out), ``validation_s``,
    ``cache_fill_s``, ``encode_s`` (re-encoding the kept round's LMs at the end; 0 when the
    last round is kept), ``seconds``, ``peak_rss_mb_max_trainer``."""

    progress_checkpoints = False

    def lm_phase_settings(self) -> Stage3Config:
        """Stage 3's section as an LM phase runs it: graph-free (``lm_only``), every target of
        a batch (gold and pseudo) encoded with gradient, no re-fit, no auxiliary head."""
        s = self.cfg.stage3
        per_batch = s.batch_size + math.ceil(s.pseudo_label_ratio * s.batch_size)
        return dataclasses.replace(s, mode="lm_only", refit_gnn=False, lm_aux_weight=0.0,
                                   lm_train_nodes=max(s.lm_train_nodes, per_batch))

    def gnn_phase_pseudo(self, pseudo):
        """The LM's pseudo-labels as the GNN phase weighs them (``glem_gnn_pseudo_weight``,
        null: unchanged), or None when that weight is 0 (gold labels alone)."""
        w = self.cfg.stage3.glem_gnn_pseudo_weight
        if w is None:
            return pseudo
        return dataclasses.replace(pseudo, weight=w) if w > 0 else None

    def fit(self) -> dict:
        t0, env, task, s3 = time.time(), self.env, self.task, self.cfg.stage3
        self.s, self.graph_free = s3, False
        lms, gnn, learnable = self.build_models()  # stage 2's GNN, the start LMs
        env.lm_cache(lms.out_dim)
        timer = PhaseTimer({"cache_fill": 0.0, "validation": 0.0, "encode": 0.0})
        with timer("cache_fill"):
            env.fill_cache(lms)  # a full encode unless the job's stage 2 left the cache
        best = BestModel(task.primary)
        with timer("validation"):
            val = evaluate(task, gnn, env.features(learnable), "val", env.fanouts(),
                           self.cfg.eval_batch_size)
        best.update(0, val, gnn, learnable, lms)
        history = [{"step": 0, **scalar_metrics(val)}]
        self.log(f"[{self.name}] GLEM round 0 (stage 2's model): "
                 + describe(task.metric_names, prefixed("val", val)))
        # the LM's classifier (GLEM's LM predicts labels itself): an MLP head warmed on the
        # start LMs' embeddings, so the first LM phase does not learn through a random head
        mlp, warm = fit_head(self, learnable, lms.out_dim, self.cfg.stage2.epochs,
                             f"{self.name}_glem0_mlp", salt=1, graph_free=True)
        mlp.label_smoothing = s3.label_smoothing
        self.log(f"[{self.name}] GLEM: the LM's MLP classifier warmed on the start LMs' "
                 f"embeddings: val acc {warm.get('val_acc', float('nan')):.4f}")
        rounds, totals, steps, epochs, per_epoch, last = [], {}, 0, 0.0, 0, None
        for r in range(1, s3.glem_rounds + 1):
            t_lm = time.time()
            # E-step: the LMs on gold + the GNN's pseudo-labels (graph-free MLP head)
            self.s, self.graph_free = self.lm_phase_settings(), True
            run, stats = self.train(lms, mlp, learnable, teacher=(gnn, env.fanouts()),
                                    name=f"{self.name}_glem{r}_lm")
            n_lm_pseudo = len(self.pseudo)
            lm_m = self.select(run, lms, mlp, learnable)  # best LMs, every node re-encoded
            timer.add("validation", stats["validation_s"])
            steps, epochs, per_epoch = steps + run.done, epochs + stats["epochs"], \
                stats["steps_per_epoch"]
            for k, v in stats["lm_encodings"].items():
                totals[k] = totals.get(k, 0) + v
            t_gnn = time.time()
            # M-step: a fresh GNN on gold + the LM's pseudo-labels, on the re-encoded cache
            self.s, self.graph_free = s3, False
            pseudo = self.gnn_phase_pseudo(make_pseudo_labels(self, mlp, env.fanouts(True),
                                                              learnable))
            n_gnn_pseudo = len(pseudo) if pseudo else 0
            gnn, last = fit_head(self, learnable, lms.out_dim, self.refit_epochs(),
                                 f"{self.name}_glem{r}_gnn", pseudo=pseudo, salt=1 + r)
            gval = {k[len("val_"):]: v for k, v in last.items() if k.startswith("val_")}
            improved = best.update(r, gval, gnn, learnable, lms)
            history.append({"step": r, **scalar_metrics(gval)})
            rounds.append({"round": r, "lm_val_acc": lm_m.get("val_acc"),
                           "lm_test_acc": lm_m.get("test_acc"), "lm_pseudo": n_lm_pseudo,
                           "gnn_val_acc": last.get("val_acc"),
                           "gnn_test_acc": last.get("test_acc"),
                           "gnn_pseudo": n_gnn_pseudo,
                           "lm_s": t_gnn - t_lm, "gnn_s": time.time() - t_gnn})
            self.log(f"[{self.name}] GLEM round {r}: LM alone val acc "
                     f"{lm_m.get('val_acc', float('nan')):.4f} (taught by {n_lm_pseudo} GNN "
                     f"pseudo-labels), GNN val acc {last.get('val_acc', float('nan')):.4f} "
                     f"(taught by {n_gnn_pseudo} LM pseudo-labels)"
                     + ("  (best so far)" if improved else f"  (best: round {best.epoch})"))
        train_s = time.time() - t0 - timer.seconds["cache_fill"] - timer.seconds["validation"]
        if best.epoch == s3.glem_rounds:  # the last round: cache and GNN hold it already
            metrics = {k: v for k, v in last.items() if k.startswith(("val_", "test_"))}
        else:  # an earlier round (or stage 2's model): its LMs re-encode every node
            best.restore(gnn, learnable, lms)
            with timer("encode"):
                env.fill_cache(lms, step=best.epoch)
            with timer("validation"):
                metrics = evaluate_splits(task, gnn, env.features(learnable), env.fanouts(),
                                          self.cfg.eval_batch_size)
        sec = timer.seconds
        self.kept_head = gnn
        lm_types = list(env.encoders.lm_of)
        totals["full_reencode"] = s3.glem_rounds * sum(self.g.num_nodes(nt) for nt in lm_types)
        metrics.update(
            best_step=best.epoch, lm_step=best.epoch, head="glem" if best.epoch else "joint",
            mlp_warm={k: v for k, v in warm.items() if k in ("val_acc", "test_acc")},
            val_history=history, rounds=rounds, steps=steps, steps_per_epoch=per_epoch,
            epochs=epochs, lm_encodings=totals,
            lm_encodings_per_node_per_epoch=per_node_per_epoch(totals, self.g, lm_types, epochs),
            train_s=train_s, validation_s=sec["validation"],
            cache_fill_s=sec["cache_fill"], encode_s=sec["encode"], seconds=time.time() - t0)
        return self.finish(metrics, lms=lms, head=gnn, learnable=learnable)
