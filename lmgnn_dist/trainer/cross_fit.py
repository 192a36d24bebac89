"""Stage 1's cross-fitting (``stage1.cross_fit_folds``): out-of-fold LM embeddings of the
training targets, so stage 2's GNN never trains on an embedding from an LM that saw that
target's label.

Why: an LM fine-tuned on the labels fits its training targets into their embeddings; a GNN
trained on those rows learns to trust a target's own embedding more than it deserves on
validation and test nodes, whose labels the LM never saw (issue 22: a longer stage 1 made the
LM alone better and its stage 2 worse, below the frozen LM's). Cross-fitting (stacked
generalisation, Wolpert 1992: every training row's features come from a model fitted
without it) splits the training targets into K folds (:func:`fold_of`), fine-tunes LM k from
the configured models on the other K - 1 folds with the stage's own recipe (budget, schedule,
validation, best step kept) and encodes fold k with it. Validation, test and unlabelled nodes
keep the stage's own LMs' rows (trained on every training target), and stage 3 starts from
those LMs as without cross-fitting. An export (``lmgnn-embed``) encodes every node with the
checkpoint's LMs: out-of-fold rows are a training device, and at inference the LM has seen
the training labels anyway.

Files: ``<stage1>/oof_emb/rank-<r>.pt`` per trainer: ``{"ntype", "ids": int64 [n_r] graph
ids, "emb": float32 [n_r, D], "folds": K}``; :func:`apply_out_of_fold` writes them over the
LM-embedding cache (stage 2).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.distributed as dist

from ..dist_init import all_reduce

#: the stage-1 checkpoint's folder of out-of-fold rows
OOF_DIR = "oof_emb"


def fold_of(ids: torch.Tensor, num_nodes: int, folds: int, seed: int) -> torch.Tensor:
    """The fold, int64 ``[N]`` in ``[0, folds)``, of nodes ``ids`` (int64 ``[N]``, graph ids of
    a node type with ``num_nodes`` nodes): ``perm[id] % folds`` for ``perm`` a random
    permutation of ``0..num_nodes-1`` drawn from ``seed`` -- a function of (id, seed) alone,
    so every trainer agrees; the type's nodes split into folds of sizes differing by at most
    1, a subset (the training targets) in expectation."""
    perm = torch.randperm(num_nodes, generator=torch.Generator().manual_seed(seed))
    return perm[ids.long()] % folds


def cross_fit(trainer) -> Tuple[dict, Tuple[str, dict]]:
    """Fit the ``stage1.cross_fit_folds`` fold LMs of a :class:`~.task_lm.TaskLMTrainer`
    whose own LMs are trained and kept, and encode each fold with the LM that did not see it
    (no grad, the stage's precision and pooling). Collective. Progress checkpoints are off
    for the folds (a restarted job fits them again).

    Returns ``(metrics, rank_files)``: ``metrics`` = ``{"folds": K, "seconds", "fold":
    [{"fold": k, "train_targets" (all trainers), "encoded" (all trainers), "best_step",
    "val_<primary>"}, ...]}``; ``rank_files`` = ``(OOF_DIR, this trainer's rows)`` for
    :meth:`~.base.StageTrainer.finish`."""
    t0, cfg, task, g = time.time(), trainer.cfg, trainer.task, trainer.g
    k_folds, target, primary = cfg.stage1.cross_fit_folds, task.target, task.primary
    train = task.split_targets("train")
    fold = fold_of(train, g.num_nodes(target), k_folds, cfg.seed)
    trainer.progress_checkpoints = False
    ids, embs, per_fold = [], [], []
    for k in range(k_folds):
        torch.manual_seed(trainer.stage_seed + 1 + k)  # fold k's dropout draws
        with task.restricted_split("train", train[fold != k]):
            lms, head, learnable = trainer.build_models()
            run, _ = trainer.train(lms, head, learnable, name=f"{trainer.name}_fold{k}")
            run.best.restore(head, learnable, lms)
        mine = train[fold == k]
        emb = lms.encoder(target).encode_no_grad(g.nodes[target].data["input_ids"][mine],
                                                 cfg.encode_batch_size)
        ids.append(mine)
        embs.append(emb)
        counts = all_reduce(torch.tensor([len(train) - len(mine), len(mine)])).tolist()
        per_fold.append({"fold": k, "train_targets": counts[0], "encoded": counts[1],
                         "best_step": run.best.epoch, f"val_{primary}": run.best.val[primary]})
        trainer.log(f"[{trainer.name}] fold {k + 1}/{k_folds}: LM fine-tuned on {counts[0]} "
                    f"training targets (val {primary} {run.best.val[primary]:.4f}, step "
                    f"{run.best.epoch}), encoded the other {counts[1]}", console=True)
    rows = {"ntype": target, "ids": torch.cat(ids), "emb": torch.cat(embs), "folds": k_folds}
    return ({"folds": k_folds, "seconds": time.time() - t0, "fold": per_fold},
            (OOF_DIR, rows))


def apply_out_of_fold(env, lm_dir: Optional[Path], step: int = 0) -> Optional[dict]:
    """When the stage-1 checkpoint ``lm_dir`` holds out-of-fold rows (``oof_emb/``), write
    them over the LM-embedding cache: trainer ``r`` of ``world_size`` reads files
    ``r, r + world_size, ...`` of the sorted ``rank-*.pt`` (any number of trainers wrote
    them) and writes their rows, so each holds about ``N_train / world_size`` rows in memory
    (the KV store puts rows of other partitions on their servers). Collective, called after
    the cache is filled; every trainer's :attr:`~lmgnn_dist.data.lm_cache.LMEmbeddingCache.
    filled_by` is cleared (the cache no longer holds one LM's encode, so stage 3 re-encodes
    with its LMs). Returns ``{"rows": training targets overwritten (all trainers), "folds":
    K}``, or None without such rows (nothing done, not collective then: every trainer sees
    the same folder).

    Raises FileNotFoundError naming the folder when it holds no ``rank-*.pt`` file."""
    folder = Path(lm_dir) / OOF_DIR if lm_dir is not None else None
    if folder is None or not folder.is_dir():
        return None
    files = sorted(folder.glob("rank-*.pt"))
    if not files:
        raise FileNotFoundError(f"{folder}: no rank-*.pt files (an incomplete stage-1 "
                                "checkpoint?)")
    r, w, cache = env.ctx.rank, env.ctx.world_size, env.cache
    rows, folds = 0, 0
    for path in files[r::w]:
        part = torch.load(path, map_location="cpu")
        cache.write(part["ntype"], part["ids"], part["emb"], step)
        cache.fence(part["ntype"], part["ids"])
        rows, folds = rows + len(part["ids"]), max(folds, int(part["folds"]))
    cache.filled_by = None
    rows = int(all_reduce(torch.tensor([rows])).item())  # also: every trainer's rows fenced
    folds = int(all_reduce(torch.tensor([folds]), dist.ReduceOp.MAX).item())
    return {"rows": rows, "folds": folds}
