"""The optimizer step every stage takes (``StageTrainer.optimizer_step``) and stage 3's
parameter groups: gradient averaging, global or per-group clipping, fp16 unscaling, the
scheduler step, the head's own weight decay."""
from __future__ import annotations

import pytest
import torch

from lmgnn_dist.stages import StageStart
from lmgnn_dist.trainer import GNNTrainer
from test_trainer_units import toy_env, toy_graph


def test_optimizer_step_clips_the_averaged_gradient_and_steps_the_scheduler(tmp_path,
                                                                           one_process_group):
    """SGD with lr 1: the update is the gradient scaled to norm ``max_grad_norm``; the returned
    norm is the one before clipping; the scheduler moved on by one step."""
    g, _ = toy_graph()
    trainer = GNNTrainer(toy_env(tmp_path, g), "stage2", StageStart())
    lin = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
    model = trainer.ddp(lin)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    x = torch.tensor([[30.0, 40.0, 0.0]])  # d(loss)/dw = x: norm 50
    norm = trainer.optimizer_step(model(x).sum(), opt, max_grad_norm=0.5, scheduler=sched)
    assert norm == pytest.approx(50.0)
    assert torch.allclose(lin.weight, torch.tensor([[-0.3, -0.4, 0.0]]), atol=1e-6)
    assert opt.param_groups[0]["lr"] == 0.5
    assert trainer.optimizer_step(model(x).sum(), opt) is None  # no clipping: None
    assert torch.allclose(lin.weight, torch.tensor([[-15.3, -20.4, 0.0]]), atol=1e-5)


def test_optimizer_step_clips_each_group_on_its_own(tmp_path, one_process_group):
    """Two groups (an "LM" with gradient norm 50 and a "head" with norm 0.3), SGD lr 1,
    max_grad_norm 0.5: a global clip shrinks both by 0.5/50.0009 (the head's step ~0.003);
    per group the LM's is cut to 0.5 and the head's 0.3 is left whole. The returned norm is
    the global one before clipping either way."""
    g, _ = toy_graph()
    trainer = GNNTrainer(toy_env(tmp_path, g), "stage2", StageStart())
    for per_group, head_step in ((False, 0.3 * 0.5 / (50.0 ** 2 + 0.3 ** 2) ** 0.5),
                                 (True, 0.3)):
        lm, head = (torch.nn.Linear(3, 1, bias=False) for _ in range(2))
        with torch.no_grad():
            lm.weight.zero_()
            head.weight.zero_()
        model = trainer.ddp(torch.nn.ModuleList([lm, head]))
        opt = torch.optim.SGD([{"params": lm.parameters()}, {"params": head.parameters()}],
                              lr=1.0)
        loss = model.module[0](torch.tensor([[30.0, 40.0, 0.0]])).sum() + \
            model.module[1](torch.tensor([[0.0, 0.0, 0.3]])).sum()
        norm = trainer.optimizer_step(loss, opt, max_grad_norm=0.5, per_group=per_group)
        assert norm == pytest.approx((50.0 ** 2 + 0.3 ** 2) ** 0.5)
        assert float(-head.weight[0, 2]) == pytest.approx(head_step, rel=1e-4)
        lm_step = float(lm.weight.norm())
        assert lm_step == pytest.approx(0.5 if per_group else 0.5 * 50.0 / norm, rel=1e-4)


def test_joint_optimizer_head_regime():
    """The head's weight decay is its own when set (stage 2's regime), the LMs' otherwise."""
    from lmgnn_dist.config import Stage3Config
    from lmgnn_dist.trainer.joint import joint_optimizer

    lm, head = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    opt = joint_optimizer(lm, head, Stage3Config(lm_lr=2e-5, gnn_lr=1e-3, weight_decay=0.01,
                                                 head_weight_decay=5e-4))
    assert [(g["lr"], g["weight_decay"], len(g["params"])) for g in opt.param_groups] == [
        (2e-5, 0.01, 2), (1e-3, 5e-4, 2)]
    opt = joint_optimizer(lm, head, Stage3Config(weight_decay=0.01))
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.01]


class _Fp16Scaler:
    """GradScaler's contract on the CPU (torch's needs CUDA): loss x 1024 for backward,
    gradients / 1024 in ``unscale_``, ``step`` steps; records the order of the calls."""

    def __init__(self):
        self.calls = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * 1024.0

    def unscale_(self, opt):
        self.calls.append("unscale_")
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad.div_(1024.0)

    def step(self, opt):
        self.calls.append("step")
        opt.step()

    def update(self):
        self.calls.append("update")


def test_optimizer_step_unscales_fp16_gradients_before_clipping(tmp_path, one_process_group):
    """Under fp16 the loss is scaled for backward and the gradients unscaled before the clip,
    so the norm returned and the update are those of the true gradient (norm 50 -> 0.5)."""
    g, _ = toy_graph()
    trainer = GNNTrainer(toy_env(tmp_path, g), "stage2", StageStart())
    assert not trainer.scaler.is_enabled()  # fp32 on the CPU: a pass-through
    trainer.scaler = _Fp16Scaler()
    lin = torch.nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
    model = trainer.ddp(lin)
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    norm = trainer.optimizer_step(model(torch.tensor([[30.0, 40.0, 0.0]])).sum(), opt,
                                  max_grad_norm=0.5)
    assert norm == pytest.approx(50.0)
    assert torch.allclose(lin.weight, torch.tensor([[-0.3, -0.4, 0.0]]), atol=1e-6)
    assert trainer.scaler.calls == ["scale", "unscale_", "step", "update"]


# ---------------------------------------------------------------------- pseudo-labels (GLEM)
