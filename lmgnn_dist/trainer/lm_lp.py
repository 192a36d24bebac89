"""Stage 1: graph-aware LM pre-fine-tuning on link prediction (LM-GNN §3.1).

(``stage1.objective: task`` runs :class:`~lmgnn_dist.trainer.joint.TaskLMTrainer` instead.)

The LMs alone, trained on the graph's edges: each step draws a relation (weighted by this
trainer's edges of it), ``batch_size`` positive edges of it, and ``num_negatives`` joint
negatives per positive (LM-GNN §3.2); every unique end point is encoded once with gradient,
DistMult scores the pairs and the logistic loss (eq. 2) trains LMs and DistMult. Only
relations whose both end types are LM-encoded take part. Budget (steps, or epochs of this
trainer's edges), schedule and clipping: :mod:`~lmgnn_dist.trainer.schedule`. Validation:
the MRR of ``stage1.val_edges`` held-out edges per trainer (:class:`~.held_out_links.
HeldOutLinks`) before training and at each validation point; the LMs + DistMult of the best
are kept, with early stopping as configured.
"""
from __future__ import annotations

import time
from typing import Dict

import torch

from .builders import build_lms
from ..model.joint import LMLinkPredictor
from ..data.node_inputs import gather_tokens
from ..data.sampling import joint_negative_sample
from .base import StageTrainer
from .held_out_links import HeldOutLinks
from .run import StageRun
from .schedule import budget_steps, eval_steps, make_scheduler


class LMLinkPredictionTrainer(StageTrainer):
    """Stage 1; ``fit()`` -> metrics ``loss_first``/``loss_last`` (means of the first/last
    fifth of the steps), ``losses``, ``steps`` (done), ``stopped_early``,
    ``lm_encodings_per_step``, ``link_val`` (held-out MRR/hits@k of the kept LMs, or None),
    ``best_step``, ``val_history``, ``seconds``."""

    def relations(self) -> list:
        lm_of = self.env.encoders.lm_of
        return [c for c in self.g.canonical_etypes if c[0] in lm_of and c[2] in lm_of]

    def local_edges(self, relations) -> Dict[tuple, torch.Tensor]:
        """This trainer's even share of each relation's edge ids (``edge_split``)."""
        import dgl

        pb = self.g.get_partition_book()
        return {c: dgl.distributed.edge_split(torch.ones(self.g.num_edges(c), dtype=torch.bool),
                                              pb, etype=c, force_even=True)
                for c in relations}

    def fit(self) -> dict:
        s, t0 = self.cfg.stage1, time.time()
        lms = build_lms(self.env.encoders, self.cfg.model, device=self.env.device, trains=True)
        relations = self.relations()
        model = LMLinkPredictor(lms, relations)
        model.decoder.to(self.env.device.gnn)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": model.decoder.parameters(), "lr": s.decoder_lr}])
        held_out = HeldOutLinks(self.local_edges(relations), s.val_edges, s.val_negatives,
                                self.g.num_nodes, self.gen, keep=s.batch_size)
        local_edges = held_out.train
        cetypes = [c for c in local_edges if len(local_edges[c]) >= s.batch_size]
        if not cetypes:
            raise ValueError(f"stage1.batch_size={s.batch_size} exceeds every text relation's "
                             "edges")
        weights = torch.tensor([float(len(local_edges[c])) for c in cetypes])
        # an epoch: this trainer's edges of the sampled relations once, in expectation
        per_epoch = self.min_over_trainers(int(weights.sum()) // s.batch_size)
        total = budget_steps(s, per_epoch)
        validating = s.val_edges > 0  # the same on every trainer (collective validation)
        evals = eval_steps(total, per_epoch, s.eval_every) if validating else []
        sched = make_scheduler(opt, s, total)
        run = StageRun(self, total, evals, "mrr", {"model": model, "sched": sched}, opt,
                       patience=s.patience)
        ddp = self.ddp(model)
        encoded = run.state.get("encoded", 0)  # LM encodings so far
        rows = lambda nt, ids: self.g.nodes[nt].data["input_ids"][ids]  # noqa: E731

        def validate(step: int) -> None:
            val = held_out.evaluate(
                lambda eids, c: self.g.find_edges(eids, etype=c),
                lambda nt, ids: lms.encoder(nt).encode_no_grad(rows(nt, ids),
                                                               self.cfg.encode_batch_size),
                model.decoder)
            run.validated(step, val, model.decoder, lms=lms, line=f"held-out link MRR "
                          f"{val['mrr']:.4f} over {val['num_edges']} edges")

        if validating and run.done == 0:
            validate(0)
        model.train()
        for step in run.steps(lambda: {"encoded": encoded}):
            c = cetypes[int(torch.multinomial(weights, 1, generator=self.gen))]
            edges = local_edges[c]
            eids = edges[torch.randint(0, len(edges), (s.batch_size,), generator=self.gen)]
            src, dst = self.g.find_edges(eids, etype=c)
            neg = joint_negative_sample(s.batch_size, s.num_negatives, self.g.num_nodes(c[2]),
                                        generator=self.gen)
            tokens, (src_pos, dst_pos, neg_nodes_pos) = gather_tokens(
                rows, [(c[0], src), (c[2], dst), (c[2], neg.neg_nodes)])
            loss, _ = ddp(tokens, src_pos, dst_pos, neg_nodes_pos[neg.pair_index], c)
            norm = self.optimizer_step(loss, opt, max_grad_norm=s.max_grad_norm,
                                       per_group=s.clip_per_group,
                                       scheduler=sched)
            n_enc = sum(len(t) for t in tokens.values())
            encoded += n_enc
            run.record(step, loss.item(), f"loss {loss.item():.4f}  ({n_enc} LM encodings "
                       f"for {s.batch_size} positives x {s.num_negatives} negatives)",
                       grad_norm=norm, **{"lm_encodings/per_step": n_enc,
                                          "lr/lm": sched.get_last_lr()[0]})
            if run.validation_due(step):
                validate(step)
        if run.best.val is not None:
            run.best.restore(model.decoder, lms=lms)
        metrics = {**run.summary(), "lm_encodings_per_step": encoded / max(1, run.done),
                   "link_val": run.best.val, "seconds": time.time() - t0}
        run.close(metrics)
        return self.finish(metrics, lms=lms)
