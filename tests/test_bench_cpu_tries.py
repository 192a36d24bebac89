"""benchmarks/bench_cpu_tries.py's pieces that decide what is compared (no timing asserted)."""
import copy
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_cpu_tries as bt  # noqa: E402


def test_train_mode_without_dropout_is_the_eval_function():
    lm = bt.make_lm("fp32", 0)  # eval mode (stage 3's default)
    ids = torch.randint(1000, 20000, (4, 16), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 101
    ref = lm(ids).detach()
    twin = copy.deepcopy(lm)
    bt._no_dropout_train_mode(twin.lm)
    assert twin.lm.training and all(not isinstance(m, torch.nn.Dropout) or m.p == 0.0
                                    for m in twin.lm.modules())
    assert torch.equal(twin(ids).detach(), ref)
    plain = copy.deepcopy(lm)
    plain.lm.train()  # dropout on: another function, so the helper is what makes them equal
    assert not torch.equal(plain(ids).detach(), ref)


def test_passes_encode_and_train_the_same_weights_the_wrap_gives():
    lm = bt.make_lm("fp32", 0)
    ids = torch.randint(1000, 20000, (4, 8), generator=torch.Generator().manual_seed(1))
    seen = {}

    def wrap(m, opt):
        seen["opt"] = opt
        return m, opt

    encode, step = bt.passes(lm, ids, 2, 4, wrap)
    before = encode().clone()
    assert before.shape == (4, lm.out_dim) and before.dtype == torch.float32
    step()
    assert isinstance(seen["opt"], torch.optim.AdamW)
    assert not torch.equal(encode(), before)  # the step changed the weights encode reads
    assert bt._rate(lambda: None, 0.0, 3) > 0
