"""Pseudo-labels for the joint stage (GLEM; Zhao et al., ICLR 2023, "Learning on Large-scale
Text-attributed Graphs via Variational Inference", the LM's pseudo-likelihood term, eq. 8).

GLEM trains its LM on the gold labels plus the GNN's predictions for unlabelled nodes, so the
LM learns from the whole graph when labels are few. Here the teacher is the model stage 3
starts from (stage 2's GNN on the start LMs' embeddings): before the first step it predicts
this trainer's target nodes in neither the training nor the validation split (test and
unlabelled: the transductive setting GLEM uses; gold labels of those nodes are never read;
validation nodes stay out because every kept model is selected on them), and keeps those
predicted with probability >= ``stage3.pseudo_label_threshold``. Every training batch of
``n`` gold targets is then joined by ``ceil(pseudo_label_ratio * n)`` pseudo-labelled ones
drawn at random, and the loss is the weighted mean cross-entropy with weight 1 for gold and
``stage3.pseudo_label_weight`` for pseudo targets. An epoch still counts the gold targets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

from .evaluation import eval_mode


@dataclass
class PseudoLabels:
    """This trainer's pseudo-labelled targets.

    Attributes
    ----------
    ids : int64 ``[P]`` target-type node ids; ``labels`` int64 ``[P]`` the teacher's classes.
    weight : loss weight of a pseudo target (gold: 1). ``ratio`` : pseudo per gold target.
    """

    ids: torch.Tensor
    labels: torch.Tensor
    weight: float
    ratio: float

    @classmethod
    def from_teacher(cls, probs: torch.Tensor, ids: torch.Tensor, threshold: float,
                     weight: float, ratio: float) -> "PseudoLabels":
        """Keep ``ids`` whose teacher probability (``probs`` float ``[N, C]``) of the argmax
        class is >= ``threshold``."""
        conf, pred = probs.max(1)
        keep = conf >= threshold
        return cls(ids[keep], pred[keep], weight, ratio)

    def __len__(self) -> int:
        return len(self.ids)

    def per_batch(self, n_gold: int) -> int:
        """Pseudo targets joining a batch of ``n_gold`` gold ones (at most all of them)."""
        return min(len(self), math.ceil(self.ratio * n_gold))

    def draw(self, n: int, gen: torch.Generator) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` distinct pseudo-labelled targets at random: ``(ids, labels)``, int64 ``[n]``."""
        pick = torch.randperm(len(self), generator=gen)[:n]
        return self.ids[pick], self.labels[pick]

    def state(self) -> dict:
        return {"ids": self.ids, "labels": self.labels}


def make_pseudo_labels(trainer, head, fanouts, learnable, saved: Optional[dict] = None
                       ) -> Optional[PseudoLabels]:
    """The stage's pseudo-labels (None when ``trainer.s.pseudo_label_weight`` is 0): restored
    from a progress checkpoint's rank state ``saved``, else predicted by the teacher ``head``
    (stage 3: its start model, fanouts the graph's; GLEM: the GNN for the LM, the LM's MLP
    head with fanouts ``[0]`` for the GNN) on the LM-embedding cache as it is, with full
    neighbourhoods. Not collective; logs how many were kept on rank 0."""
    s = trainer.s
    if s.pseudo_label_weight == 0:
        return None
    kw = dict(weight=s.pseudo_label_weight, ratio=s.pseudo_label_ratio)
    if saved is not None:
        return PseudoLabels(saved["ids"], saved["labels"], **kw)
    task, env = trainer.task, trainer.env
    ids = task.unlabelled_targets()
    with eval_mode(head):
        probs = task.predict(head, env.features(learnable), ids, fanouts,
                             trainer.cfg.eval_batch_size)
    pseudo = PseudoLabels.from_teacher(probs, ids, s.pseudo_label_threshold, **kw)
    trainer.log(f"[{trainer.name}] pseudo-labels: {len(pseudo)} of this trainer's {len(ids)} "
                f"targets in neither the training nor the validation split (teacher "
                f"probability >= {s.pseudo_label_threshold}), weight {pseudo.weight}, "
                f"{pseudo.ratio} per gold target")
    return pseudo
