"""The stage budget, learning-rate schedule, validation points, early stopping and model
selection of stages 1 and 3 (:mod:`lmgnn_dist.trainer.schedule`, :class:`BestModel`), without
a DistDGL job."""
import math

import pytest
import torch

from lmgnn_dist.config import ConfigError, Stage1Config, Stage3Config, load_config
from lmgnn_dist.trainer.evaluation import BestModel
from lmgnn_dist.trainer.schedule import EarlyStopping, budget_steps, eval_steps, make_scheduler


def test_budget_is_epochs_times_steps_per_epoch_rounded_up_or_max_steps():
    assert budget_steps(Stage3Config(max_steps=7), 100) == 7
    assert budget_steps(Stage3Config(max_steps=7, epochs=2), 30) == 60
    assert budget_steps(Stage3Config(epochs=0.5), 31) == 16  # ceil(15.5)
    assert budget_steps(Stage3Config(epochs=0.01), 3) == 1  # never 0 with an epoch budget
    assert budget_steps(Stage1Config(max_steps=0), 10) == 0


def _lrs(schedule, warmup_ratio, total, peaks=(1e-4, 1e-2)):
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": peaks[0]}, {"params": [p2], "lr": peaks[1]}])
    sched = make_scheduler(opt, Stage3Config(schedule=schedule, warmup_ratio=warmup_ratio),
                           total)
    out = []
    for _ in range(total):
        out.append(sched.get_last_lr())  # the rate the next optimizer step uses
        opt.step()
        sched.step()
    return out


def test_linear_schedule_warms_up_then_decays_each_group_to_its_own_peak():
    lrs = _lrs("linear", 0.2, 10)  # 2 warm-up steps
    lm = [a for a, _ in lrs]
    assert lm[0] == 0.0 and lm[1] == pytest.approx(0.5e-4) and lm[2] == pytest.approx(1e-4)
    assert lm[2:] == sorted(lm[2:], reverse=True) and lm[-1] == pytest.approx(1e-4 / 8)
    for a, b in lrs:  # every group scaled by the same factor: each keeps its own peak
        assert b == pytest.approx(a * 100)


def test_cosine_and_constant_schedules():
    cos = [a for a, _ in _lrs("cosine", 0.0, 4)]
    assert cos[0] == pytest.approx(1e-4)
    assert cos[2] == pytest.approx(1e-4 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    const = [a for a, _ in _lrs("constant", 0.5, 6)]
    assert const[:3] == pytest.approx([0, 1e-4 / 3, 2e-4 / 3]) and const[3:] == [1e-4] * 3


def test_eval_steps_every_epoch_or_every_n_and_always_the_last():
    assert eval_steps(10, 4, None) == [4, 8, 10]
    assert eval_steps(8, 4, None) == [4, 8]
    assert eval_steps(10, 4, 3) == [3, 6, 9, 10]
    assert eval_steps(3, 50, None) == [3]  # budget under an epoch: once, at the end
    assert eval_steps(0, 4, None) == []


def test_early_stopping_counts_validations_without_improvement_in_a_row():
    stop = EarlyStopping(2)
    assert [stop.update(x) for x in (True, False, True, False, False)] == \
        [False, False, False, False, True]
    never = EarlyStopping(None)
    assert not any(never.update(False) for _ in range(100))
    assert EarlyStopping(3, bad=2).update(False)  # resumed count


def test_best_model_keeps_lms_and_head_of_the_best_step_and_restores_them():
    head, lms = torch.nn.Linear(2, 2), torch.nn.Linear(3, 3)
    best = BestModel("acc")
    for step, acc in [(0, 0.5), (5, 0.8), (10, 0.7), (15, 0.8)]:
        with torch.no_grad():
            head.weight.fill_(step)
            lms.weight.fill_(-step)
        best.update(step, {"acc": acc}, head, lms=lms)
    assert best.epoch == 5 and best.val == {"acc": 0.8}  # a tie keeps the earlier step
    best.restore(head, lms=lms)
    assert torch.all(head.weight == 5) and torch.all(lms.weight == -5)
    again = BestModel.from_state("acc", best.state())
    assert again.epoch == 5 and torch.equal(again.lms_state["weight"], lms.weight)


def test_schedule_keys_are_validated_with_the_key_named():
    with pytest.raises(ConfigError, match="stage3.warmup_ratio"):
        load_config(None, ["stage3.warmup_ratio=1.5"])
    with pytest.raises(ConfigError, match="stage1.objective"):
        load_config(None, ["stage1.objective=mlm"])
    with pytest.raises(ConfigError, match="stage3.epochs"):
        load_config(None, ["stage3.epochs=0"])
    ok = load_config(None, ["stage3.epochs=1.5", "stage3.schedule=cosine",
                            "stage3.max_grad_norm=null", "stage1.objective=task"])
    assert ok.stage3.epochs == 1.5 and ok.stage3.max_grad_norm is None
    assert ok.stage1.objective == "task"


def test_stage1_objective_picks_its_trainer_and_the_task_trainer_maps_stage1_settings():
    from lmgnn_dist.trainer import LMLinkPredictionTrainer, TaskLMTrainer, trainer_of

    lp = load_config(None, [])
    task = load_config(None, ["stage1.objective=task", "stage1.epochs=2", "stage1.lm_lr=5e-5",
                              "stage1.decoder_lr=1e-3", "stage1.batch_size=32",
                              "stage1.patience=3"])
    assert trainer_of(lp, "stage1") is LMLinkPredictionTrainer
    assert trainer_of(task, "stage1") is TaskLMTrainer
    assert trainer_of(task, "stage3").__name__ == "JointTrainer"
    trainer = TaskLMTrainer.__new__(TaskLMTrainer)  # settings() reads only the config
    trainer.cfg = task
    s = trainer.settings()
    assert (s.mode, s.epochs, s.lm_lr, s.gnn_lr, s.batch_size, s.lm_train_nodes, s.patience,
            s.refit_gnn) == ("lm_only", 2.0, 5e-5, 1e-3, 32, 32, 3, False)
