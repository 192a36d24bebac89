"""Stage 1: graph-aware LM pre-fine-tuning on link prediction (LM-GNN §3.1).

(``stage1.objective: task`` runs :class:`~lmgnn_dist.trainer.joint.TaskLMTrainer` instead.)

The LMs alone, trained on the graph's edges: each step draws a relation (weighted by this
trainer's edges of it), ``batch_size`` positive edges of it, and ``num_negatives`` joint
negatives per positive (LM-GNN §3.2); every unique end point is encoded once with gradient,
DistMult scores the pairs and the logistic loss (eq. 2) trains LMs and DistMult. Only
relations whose both end types are LM-encoded take part. Budget (steps, or epochs of this
trainer's edges), schedule and clipping: :mod:`~lmgnn_dist.trainer.schedule`; no validation.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Sequence, Tuple

import torch

from ..builders import build_lms
from ..model.joint import LMLinkPredictor
from ..sampling import joint_negative_sample
from .base import StageTrainer
from .checkpoints import Progress
from .schedule import budget_steps, make_scheduler


def gather_tokens(token_rows: Callable[[str, torch.Tensor], torch.Tensor],
                  groups: Sequence[Tuple[str, torch.Tensor]]
                  ) -> Tuple[Dict[str, torch.Tensor], List[torch.Tensor]]:
    """Token rows of the unique nodes of ``groups`` (a list of ``(ntype, ids)``).

    ``token_rows(ntype, ids)`` reads int token ids ``[len(ids), L]``. Returns ``tokens``
    (ntype -> ``[U_t, L]``, one row per unique node of the type) and, per group, int64
    positions ``[len(ids)]`` into its type's rows: nodes appearing in several groups (or twice
    in one) are encoded once.
    """
    by_type: Dict[str, list] = {}
    for nt, ids in groups:
        by_type.setdefault(nt, []).append(ids)
    tokens, inverse = {}, {}
    for nt, parts in by_type.items():
        uniq, inv = torch.unique(torch.cat(parts), return_inverse=True)
        tokens[nt] = token_rows(nt, uniq)
        inverse[nt] = list(torch.split(inv, [len(p) for p in parts]))
    return tokens, [inverse[nt].pop(0) for nt, _ in groups]


class LMLinkPredictionTrainer(StageTrainer):
    """Stage 1; ``fit()`` -> metrics ``loss_first``/``loss_last`` (means of the first/last
    fifth of the steps), ``losses``, ``steps``, ``lm_encodings_per_step``, ``seconds``."""

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
        lms = build_lms(self.env.encoders, self.cfg.model, device=self.env.device)
        relations = self.relations()
        model = LMLinkPredictor(lms, relations)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": model.decoder.parameters(), "lr": s.decoder_lr}])
        local_edges = self.local_edges(relations)
        cetypes = [c for c in local_edges if len(local_edges[c]) >= s.batch_size]
        if not cetypes:
            raise ValueError(f"stage1.batch_size={s.batch_size} exceeds every text relation's "
                             "edges")
        weights = torch.tensor([float(len(local_edges[c])) for c in cetypes])
        # an epoch: this trainer's edges of the sampled relations once, in expectation
        total = budget_steps(s, self.min_over_trainers(int(weights.sum()) // s.batch_size))
        sched = make_scheduler(opt, s, total)
        progress = Progress(self.env, self.name, self.gen)
        state = progress.load({"model": model, "sched": sched}, opt, None)
        ddp = self.ddp(model)
        losses, encoded = state.get("losses", []), state.get("encoded", 0)
        rows = lambda nt, ids: self.g.nodes[nt].data["input_ids"][ids]  # noqa: E731
        model.train()
        mon = self.monitor(total, initial=state.get("step", 0))
        for step in range(state.get("step", 0), total):
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
                                       scheduler=sched)
            losses.append(loss.item())
            n_enc = sum(len(t) for t in tokens.values())
            encoded += n_enc
            mon.step(step + 1, losses[-1], grad_norm=norm, **{
                "lm_encodings/per_step": n_enc, "lr/lm": sched.get_last_lr()[0]})
            if step % 10 == 0 or step == total - 1:
                self.log(f"[stage1] step {step:4d}/{total}  loss {loss.item():.4f}  "
                         f"({n_enc} LM encodings for {s.batch_size} positives x "
                         f"{s.num_negatives} negatives)")
            if progress.due(step + 1, total):
                progress.save(step + 1, {"model": model, "sched": sched}, opt, None,
                              {"losses": losses, "encoded": encoded})
        k = max(1, len(losses) // 5)
        metrics = {"loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
                   "losses": losses, "steps": total,
                   "lm_encodings_per_step": encoded / max(1, total),
                   "seconds": time.time() - t0}
        mon.close(metrics)
        return self.finish(metrics, lms=lms)
