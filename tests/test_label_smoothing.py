"""Label smoothing of the node-classification loss (``stage1``/``stage3.label_smoothing``)."""
from types import SimpleNamespace

import pytest
import torch

from lmgnn_dist.config import load_config
from lmgnn_dist.model.joint import TaskModel
from lmgnn_dist.tasks.node import NodeClassificationTask
from lmgnn_dist.trainer.task_lm import TaskLMTrainer


def smoothed_ce(logits, labels, eps):
    """The reference: cross-entropy against (1 - eps) one-hot + eps / C uniform, per row."""
    logp = torch.log_softmax(logits, 1)
    c = logits.shape[1]
    target = torch.full_like(logp, eps / c)
    target[torch.arange(len(labels)), labels] += 1 - eps
    return -(target * logp).sum(1)


def test_loss_equals_the_smoothed_target_cross_entropy_with_and_without_weights():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    task = SimpleNamespace(logits=lambda decoder, h, batch: logits)
    batch = SimpleNamespace(labels=labels, weights=None)
    for eps in (0.0, 0.1, 0.3):
        got = NodeClassificationTask.loss(task, None, None, batch, label_smoothing=eps)
        assert got.item() == pytest.approx(smoothed_ce(logits, labels, eps).mean().item(),
                                           rel=1e-6)
    batch.weights = torch.tensor([1.0, 1.0, 0.5, 0.0, 2.0])
    got = NodeClassificationTask.loss(task, None, None, batch, label_smoothing=0.3)
    ref = (batch.weights * smoothed_ce(logits, labels, 0.3)).sum() / batch.weights.sum()
    assert got.item() == pytest.approx(ref.item(), rel=1e-6)
    plain = NodeClassificationTask.loss(task, None, None, batch)
    assert plain.item() != pytest.approx(got.item())


def test_task_model_passes_its_smoothing_to_the_loss_only_when_set():
    calls = []
    task = SimpleNamespace(loss=lambda dec, h, batch, **kw: calls.append(kw) or torch.tensor(0.))
    model = TaskModel(lambda blocks, h: h, torch.nn.Identity(), task)
    model([], {}, None)
    model.label_smoothing = 0.2
    model([], {}, None)
    assert calls == [{}, {"label_smoothing": 0.2}]  # edge/LP tasks never get the keyword
    assert "label_smoothing" not in model.state_dict()  # a training setting, not a weight


def test_stage1_task_objective_carries_it_and_other_tasks_are_refused():
    cfg = load_config(None, ["stage1.objective=task", "stage1.label_smoothing=0.3"])
    assert TaskLMTrainer.settings(SimpleNamespace(cfg=cfg)).label_smoothing == 0.3
    assert load_config(None, []).stage3.label_smoothing == 0.0
    with pytest.raises(ValueError, match="stage3.label_smoothing > 0 needs task.kind="
                                         "node_classification, got link_prediction"):
        load_config(None, ["task.kind=link_prediction", "task.target_etype=a__r__b",
                              "stage3.label_smoothing=0.1"])
    with pytest.raises(ValueError, match="label_smoothing"):
        load_config(None, ["stage1.label_smoothing=1.0"])  # [0, 1)
