"""Evaluation metrics of the three tasks, computed from sums that add up across trainers.

Each trainer accumulates a confusion matrix (classification) or ranking sums (link
prediction) over its share of the evaluation set; the stage code ``all_reduce``-sums them and
turns the totals into metrics with :func:`classification_metrics` / :func:`ranking_metrics`.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch

#: the ``k`` of the Hits@k reported for link prediction
HITS_AT = (1, 10)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 ``[C, C]`` counts, row = true class, column = predicted class.

    Shapes: ``pred``, ``target`` int64 ``[N]`` with values in ``[0, C)``.
    """
    idx = target.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def classification_metrics(confusion: torch.Tensor, class_names: Sequence[str]) -> Dict[str, object]:
    """Accuracy, per-class F1 and macro-F1 (unweighted mean over classes) of a confusion matrix.

    ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)``, 0 for a class that is neither present nor
    predicted (as scikit-learn's ``zero_division=0``). Returns ``{"acc", "macro_f1",
    "f1_per_class": {name: f1}, "support": {name: count}}``; ``acc`` is NaN if empty.
    """
    conf = confusion.double()
    tp = conf.diag()
    fp = conf.sum(0) - tp
    fn = conf.sum(1) - tp
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    total = conf.sum()
    return {"acc": float(tp.sum() / total) if total > 0 else float("nan"),
            "macro_f1": float(f1.mean()),
            "f1_per_class": {n: float(v) for n, v in zip(class_names, f1.tolist())},
            "support": {n: int(v) for n, v in zip(class_names, conf.sum(1).tolist())}}


def ranking_sums(pos_score: torch.Tensor, neg_score: torch.Tensor,
                 neg_valid: torch.Tensor) -> torch.Tensor:
    r"""Sums for MRR and Hits@k of positives ranked against their own negatives.

    The rank of a positive among itself and its valid negatives is
    ``1 + #{neg > pos} + #{neg == pos} / 2`` (ties split evenly, as OGB's evaluator averages
    its optimistic and pessimistic ranks).

    Shapes: ``pos_score`` ``[E]``, ``neg_score`` ``[E, K]``, ``neg_valid`` bool ``[E, K]``
    (False for padding). Returns float64 ``[2 + len(HITS_AT)]``:
    ``[count, sum 1/rank, #rank<=1, #rank<=10]``.
    """
    pos = pos_score.unsqueeze(1)
    greater = ((neg_score > pos) & neg_valid).sum(1).double()
    ties = ((neg_score == pos) & neg_valid).sum(1).double()
    rank = 1.0 + greater + ties / 2
    return torch.tensor([float(len(rank)), float((1.0 / rank).sum()),
                         *[float((rank <= k).sum()) for k in HITS_AT]], dtype=torch.float64)


def ranking_metrics(sums: torch.Tensor) -> Dict[str, float]:
    """``{"mrr", "hits@1", "hits@10", "num_edges"}`` from (all-reduced) :func:`ranking_sums`."""
    n = float(sums[0])
    out = {"mrr": float(sums[1]) / n if n else float("nan"), "num_edges": int(n)}
    for k, v in zip(HITS_AT, sums[2:].tolist()):
        out[f"hits@{k}"] = v / n if n else float("nan")
    return out
