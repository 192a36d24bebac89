"""Stage 3's auxiliary LM classifier (``stage3.lm_aux_weight``, lmgnn_dist/model/aux_head.py)."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from lmgnn_dist.model.aux_head import LMAuxHead
from lmgnn_dist.model.joint import JointModel
from lmgnn_dist.trainer.joint_inputs import JointInputs
from test_trainer_units import toy_joint


def test_loss_is_the_weighted_cross_entropy_of_the_with_grad_targets():
    torch.manual_seed(0)
    aux = LMAuxHead("paper", 4, 3, weight=0.5)
    h = torch.randn(5, 4, requires_grad=True)
    pos = torch.tensor([0, 2, 7, 1, 9])  # input positions; the batch has 3 targets (0..2)
    batch = SimpleNamespace(labels=torch.tensor([2, 0, 1]), weights=None)
    loss = aux({"paper": h}, {"paper": pos}, batch)
    ref = 0.5 * F.cross_entropy(aux.linear(h[[0, 1, 3]]), torch.tensor([2, 1, 0]))
    assert loss.item() == pytest.approx(ref.item())
    loss.backward()
    assert h.grad[[2, 4]].abs().sum() == 0 and h.grad[[0, 1, 3]].abs().sum() > 0
    # pseudo-label weights weigh each target as in the joint loss
    batch.weights = torch.tensor([1.0, 0.0, 0.25])
    loss = aux({"paper": h}, {"paper": pos}, batch)
    ce = F.cross_entropy(aux.linear(h[[0, 1, 3]]), torch.tensor([2, 1, 0]), reduction="none")
    w = torch.tensor([1.0, 0.25, 0.0])
    assert loss.item() == pytest.approx((0.5 * (w * ce).sum() / w.sum()).item())


def test_no_target_with_gradient_gives_zero_and_still_touches_every_parameter():
    aux = LMAuxHead("paper", 4, 3, weight=1.0)
    batch = SimpleNamespace(labels=torch.tensor([0, 1]), weights=None)
    loss = aux({"paper": torch.randn(2, 4)}, {"paper": torch.tensor([5, 6])}, batch)
    assert loss.item() == 0.0
    loss.backward()
    assert all(p.grad is not None for p in aux.parameters())  # DDP: no unused parameter


def test_joint_step_with_aux_adds_its_loss_and_trains_it(tmp_path, tiny_bert_dir,
                                                         one_process_group):
    """One stage-3 step on the toy graph: the loss is the joint loss plus the aux term, and
    the aux classifier is stepped with the head (its own parameter group)."""
    from lmgnn_dist.trainer.joint import joint_optimizer

    g, env, trainer, lms, head = toy_joint(tmp_path, tiny_bert_dir,
                                           **{"stage3.lm_aux_weight": 2.0})
    aux = LMAuxHead("paper", lms.out_dim, len(env.task.classes), 2.0)
    inputs = JointInputs(env, env.cfg.stage3, trainer.gen)
    batch = next(iter(env.task.train_batches(env.fanouts(), 4, trainer.gen)))
    p = inputs.prepare(batch, lms, None, step=1)
    args = p.model_args()
    loss_plain, _ = JointModel(lms, head)(batch.blocks, *args, batch)
    model = JointModel(lms, head, aux=aux)
    loss, h_train = trainer.ddp(model)(batch.blocks, *args, batch)
    assert loss.item() == pytest.approx(
        loss_plain.item() + aux(h_train, args[1], batch).item(), rel=1e-5)
    opt = joint_optimizer(lms, head, env.cfg.stage3, aux)
    before = aux.linear.weight.detach().clone()
    trainer.optimizer_step(loss, opt, max_grad_norm=1.0)
    assert not torch.equal(before, aux.linear.weight)
    assert any(q is aux.linear.weight for q in opt.param_groups[1]["params"])


def test_aux_needs_joint_node_classification():
    from lmgnn_dist.config import load_config

    with pytest.raises(ValueError, match="stage3.lm_aux_weight > 0 needs"):
        load_config(None, ["stage3.lm_aux_weight=1", "stage3.mode=lm_only"])
