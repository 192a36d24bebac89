"""Stage 1's cross-fitting (``stage1.cross_fit_folds``): the fold assignment, the split a fold
trains on, the config rule. The real two-trainer run (fold LMs, out-of-fold rows, stage 2
reading them) is ``test_smoke_dist.py::test_stage1_cross_fit_feeds_stage2_out_of_fold_rows``."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmgnn_dist.config import load_config
from lmgnn_dist.tasks.base import Task
from lmgnn_dist.trainer.cross_fit import fold_of


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 500), folds=st.integers(2, 7), seed=st.integers(0, 2**31 - 1))
def test_folds_are_a_function_of_id_and_seed_and_balanced_over_the_type(n, folds, seed):
    every = fold_of(torch.arange(n), n, folds, seed)
    assert every.dtype == torch.int64 and every.min() >= 0 and every.max() < folds
    counts = torch.bincount(every, minlength=folds)
    assert counts.max() - counts.min() <= 1  # over all the type's nodes
    # any subset, in any order (one trainer's targets), gets the same folds as in the whole
    sub = torch.randperm(n, generator=torch.Generator().manual_seed(seed % 1000))[: n // 2 + 1]
    assert torch.equal(fold_of(sub, n, folds, seed), every[sub])


def test_other_seeds_give_other_folds():
    a, b = (fold_of(torch.arange(1000), 1000, 2, s) for s in (0, 1))
    assert 0.4 < (a == b).float().mean() < 0.6  # independent halves agree on about half


class _Task(Task):
    def split_targets(self, split):
        return self._cached_split(split, lambda: torch.arange(10))


def test_restricted_split_is_seen_inside_and_restored_after_an_error():
    task = _Task.__new__(_Task)
    task._split_cache = {}
    keep = torch.tensor([1, 3, 5])
    with pytest.raises(RuntimeError):
        with task.restricted_split("train", keep):
            assert torch.equal(task.split_targets("train"), keep)
            assert task.num_train_targets() == 3
            raise RuntimeError("a fold failed")
    assert torch.equal(task.split_targets("train"), torch.arange(10))


@pytest.mark.parametrize("overrides", [
    ["stage1.cross_fit_folds=2"],  # link prediction objective
    ["stage1.objective=task", "stage1.cross_fit_folds=1"],
    ["stage1.objective=task", "stage1.cross_fit_folds=2", "task.kind=link_prediction",
     "task.target_etype=a__r__b"],
])
def test_config_refuses_one_fold_and_objectives_without_training_targets(overrides):
    with pytest.raises(ValueError, match=r"stage1\.cross_fit_folds=\d: 0 \(off\) or >= 2"):
        load_config(None, overrides)
    assert load_config(None, ["stage1.objective=task",
                              "stage1.cross_fit_folds=3"]).stage1.cross_fit_folds == 3


def test_config_refuses_a_head_warmup_without_the_task_objective():
    with pytest.raises(ValueError, match=r"stage1\.head_warmup_epochs=3 warms the task head "
                                         r"and needs stage1\.objective=task, got link_pred"):
        load_config(None, ["stage1.head_warmup_epochs=3"])
    cfg = load_config(None, ["stage1.objective=task", "stage1.head_warmup_epochs=3"])
    assert cfg.stage1.head_warmup_epochs == 3
    assert load_config(None, []).stage1.head_warmup_epochs == 0  # off by default


class _Cache:
    """Records writes and fences (an LM-embedding cache stand-in)."""

    def __init__(self):
        self.writes, self.fenced, self.filled_by = [], [], "stage-1 LM"

    def write(self, ntype, ids, emb, step):
        self.writes.append((ntype, ids.tolist(), emb.clone(), step))

    def fence(self, ntype, ids):
        self.fenced.append((ntype, ids.tolist()))


def test_each_trainer_applies_its_share_of_the_out_of_fold_files(tmp_path, one_process_group):
    """Trainer r of w reads files r, r + w, ... only (memory ~ N_train / w per trainer); 3
    files written by 3 trainers, read by trainer 1 of 2: the second file alone, fenced, and
    the cache no longer claims one LM's encode. (One process: the all-reduced counts are this
    trainer's.)"""
    from types import SimpleNamespace

    from lmgnn_dist.trainer.cross_fit import OOF_DIR, apply_out_of_fold

    folder = tmp_path / OOF_DIR
    folder.mkdir()
    parts = [{"ntype": "paper", "ids": torch.arange(3 * r, 3 * r + 2 + r),
              "emb": torch.full((2 + r, 4), float(r)), "folds": 2} for r in range(3)]
    for r, part in enumerate(parts):
        torch.save(part, folder / f"rank-{r}.pt")
    cache = _Cache()
    env = SimpleNamespace(ctx=SimpleNamespace(rank=1, world_size=2), cache=cache)
    assert apply_out_of_fold(env, tmp_path, step=5) == {"rows": 3, "folds": 2}
    (ntype, ids, emb, step), = cache.writes
    assert (ntype, ids, step) == ("paper", [3, 4, 5], 5) and torch.equal(emb, parts[1]["emb"])
    assert cache.fenced == [("paper", [3, 4, 5])] and cache.filled_by is None
    assert apply_out_of_fold(env, tmp_path / "elsewhere") is None  # no oof_emb/: nothing done
    for f in folder.iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match="no rank-\\*.pt files"):
        apply_out_of_fold(env, tmp_path)
