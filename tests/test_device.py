"""Devices and precision (issue 14) on the CPU: resolution and its errors, the LM under bf16
autocast, gradient checkpointing without dropout, and the gradient all-reduce used when the
LMs (GPU) and the GNN (CPU) share one model. The GPU side is benchmarks/gpu_check.sh."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lmgnn_dist.device import (CPU, DeviceError, DevicePlan, auto_precision, check_precision,
                               cpu_flags, dgl_has_cuda, resolve_device, to_device)
from lmgnn_dist.model.lm import LMEncoder, MaskInComputeDtype
from lmgnn_dist.trainer.gradsync import AllReduceGradients


def test_resolution_picks_the_trainers_gpu_and_keeps_the_gnn_on_the_cpu():
    assert resolve_device("auto", cuda_available=False) == CPU
    plan = resolve_device("auto", "bf16", local_rank=1, trainers_per_machine=2,
                          cuda_available=True, gpu_count=2, dgl_cuda=False)
    assert plan.lm == torch.device("cuda", 1) and plan.gnn == torch.device("cpu")
    assert plan.mixed and plan.autocast_dtype is torch.bfloat16
    assert "LMs on cuda:1 in bf16, GNN encoder + decoder on cpu" in plan.describe()
    assert resolve_device("cpu", "bf16", cuda_available=True).lm == torch.device("cpu")


def test_the_gnn_follows_the_lm_onto_the_gpu_when_dgl_has_cuda():
    plan = resolve_device("cuda", "fp16", local_rank=1, trainers_per_machine=2,
                          cuda_available=True, gpu_count=2, dgl_cuda=True)
    assert plan.lm == plan.gnn == torch.device("cuda", 1) and not plan.mixed
    assert plan.describe() == "LMs on cuda:1 in fp16, GNN encoder + decoder on cuda:1"
    assert dgl_has_cuda() is torch.cuda.is_available() is False  # this CPU machine


def test_fp16_is_refused_for_learnable_embeddings():
    gpu = torch.device("cuda", 0)
    check_precision(DevicePlan(gpu, gpu, "fp16"), [])
    check_precision(DevicePlan(gpu, gpu, "bf16"), ["tag"])
    with pytest.raises(DeviceError, match=r"launch.precision=fp16 cannot train the learnable "
                       r"embeddings of \['tag'\]"):
        check_precision(DevicePlan(gpu, gpu, "fp16"), ["tag"])


@pytest.mark.parametrize("encoder", ["RGCN", "RGAT"])
def test_each_gnn_layer_moves_its_block_and_inputs_to_its_weights_device(monkeypatch, encoder):
    """The GNN's one device boundary: every layer of either encoder calls ``to_device`` with
    its weights' device (a no-op here), and gradients flow back through it to the inputs."""
    import dgl

    from lmgnn_dist import model as models
    from lmgnn_dist.model import gnn

    seen = []

    def recording(device, block, h):
        seen.append(device)
        return to_device(device, block, h)

    monkeypatch.setattr(gnn, "to_device", recording)
    cet = ("paper", "cites", "paper")
    blocks = [dgl.create_block({cet: (torch.tensor(s), torch.tensor(d))},
                               num_src_nodes={"paper": n_src}, num_dst_nodes={"paper": n_dst})
              for s, d, n_src, n_dst in (([2, 0, 1], [0, 1, 2], 4, 3), ([2], [1], 3, 2))]
    model = (models.RGCN(4, 4, 2, [cet]) if encoder == "RGCN" else
             models.RGAT(4, 4, 2, [cet], num_heads=2))
    x = torch.randn(4, 4, requires_grad=True)
    out = model(blocks, {"paper": x})
    out["paper"].sum().backward()
    assert seen == [torch.device("cpu")] * 2 and x.grad is not None


@pytest.mark.parametrize("args, message", [
    (dict(device="gpu"), "launch.device must be one of ['auto', 'cpu', 'cuda'], got 'gpu'"),
    (dict(precision="fp8"), "launch.precision must be one of ['auto', 'fp32', 'bf16', 'fp16']"),
    (dict(device="cuda", cuda_available=False), "launch.device=cuda but torch sees no CUDA"),
    (dict(device="cuda", trainers_per_machine=4, cuda_available=True, gpu_count=2),
     "launch.num_trainers=4 trainers per machine need a GPU each, but this machine has 2"),
    (dict(device="cpu", precision="fp16"), "launch.precision=fp16 needs launch.device=cuda"),
    (dict(device="cuda", precision="fp16", cuda_available=True, gpu_count=1, dgl_cuda=False),
     "launch.precision=fp16 needs a gradient scaler over the GPU LM and the CPU GNN"),
])
def test_resolution_errors_name_the_config_key(args, message):
    with pytest.raises(DeviceError) as err:
        resolve_device(**args)
    assert message in str(err.value) and "\n" not in str(err.value)


def _tokens(n=6, length=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 3000, (n, length), generator=gen)
    ids[:, 0], ids[:, -3:] = 101, 0  # [CLS] ... padding
    return ids


def test_lm_step_under_bf16_autocast_on_cpu(tiny_bert_dir):
    """The LM's forward runs in bf16 (CPU autocast), its [CLS] output comes back float32 and
    close to fp32's, and the LM's parameters get float32 gradients through it."""
    fp32 = LMEncoder(str(tiny_bert_dir))
    bf16 = LMEncoder(str(tiny_bert_dir), device=DevicePlan(torch.device("cpu"),
                                                           torch.device("cpu"), "bf16"))
    fp32.set_dropout(False)
    bf16.set_dropout(False)
    ids = _tokens()
    ref, out = fp32(ids), bf16(ids)
    assert out.dtype is torch.float32 and out.shape == ref.shape
    assert torch.allclose(out, ref, atol=0.1, rtol=0.05) and not torch.equal(out, ref)
    seen = []
    hook = bf16.lm.encoder.layer[0].attention.self.query.register_forward_hook(
        lambda m, i, o: seen.append(o.dtype))
    out = bf16(ids)
    hook.remove()
    assert seen == [torch.bfloat16]  # the matmuls ran in bf16
    out.pow(2).sum().backward()
    grads = [p.grad for p in bf16.lm.encoder.parameters()]
    assert all(g is not None and g.dtype is torch.float32 for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    no_grad = bf16.encode_no_grad(ids, batch_size=4)
    assert no_grad.dtype is torch.float32 and torch.allclose(no_grad, out.detach(), atol=1e-2)


def test_gradient_checkpointing_without_dropout_computes_the_eval_function(tiny_bert_dir):
    ckpt = LMEncoder(str(tiny_bert_dir), gradient_checkpointing=True)
    plain = LMEncoder(str(tiny_bert_dir))
    plain.set_dropout(False)
    ckpt.set_dropout(False)
    assert ckpt.lm.training  # HF checkpoints only in training mode: dropout zeroed instead
    ids = _tokens()
    out = ckpt(ids)
    assert torch.allclose(out, plain(ids), atol=1e-6)
    out.sum().backward()
    assert all(p.grad is not None for p in ckpt.lm.encoder.parameters())
    ckpt.set_dropout(True)  # dropout back: two passes differ
    assert not torch.allclose(ckpt(ids), ckpt(ids))


def _two_trainers(rank: int, store: str, results):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # different initial weights: the wrapper broadcasts rank 0's
    model = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1, bias=False),
                                 "mine": torch.nn.Linear(2, 1, bias=False),
                                 "never": torch.nn.Linear(2, 1, bias=False)})
    synced = AllReduceGradients(model)
    x = torch.ones(1, 2) * (rank + 1)
    loss = model["used"](x).sum() + (model["mine"](x).sum() if rank == 0 else 0)
    loss.backward()
    synced.sync()
    results[rank] = {"w": model["used"].weight.detach().clone(),
                     "used": model["used"].weight.grad.clone(),
                     "mine": model["mine"].weight.grad.clone(),
                     "never": model["never"].weight.grad}
    dist.destroy_process_group()


def test_all_reduce_gradients_averages_over_trainers(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_two_trainers, args=(str(tmp_path / "store"), results), nprocs=2, join=True)
    r0, r1 = results[0], results[1]
    assert torch.equal(r0["w"], r1["w"])  # rank 0's initial weights everywhere
    assert torch.equal(r0["used"], torch.full((1, 2), 1.5))  # mean of 1 and 2
    assert torch.equal(r1["used"], r0["used"])
    assert torch.equal(r1["mine"], torch.full((1, 2), 0.5))  # used on rank 0 only: (1 + 0) / 2
    assert r0["never"] is None and r1["never"] is None  # unused everywhere: no gradient


def test_results_table_gains_a_gpu_memory_column_only_when_a_stage_used_a_gpu():
    from lmgnn_dist.drivers.results import format_table

    stages = {"stage2": {"val_acc": 0.9, "test_acc": 0.8, "seconds": 3.0,
                         "peak_rss_mb_max_trainer": 600.0, "peak_gpu_mem_mib": 0.0}}
    assert "GPU" not in format_table(stages)
    stages["stage2"]["peak_gpu_mem_mib"] = 1234.0
    head, _, row = format_table(stages).splitlines()
    assert head.endswith("peak GPU mem") and row.endswith("1234 MiB")


# ------------------------------------------------------------------ bf16 on the CPU (issue 25)

CPU_BF16 = DevicePlan(torch.device("cpu"), torch.device("cpu"), "bf16")


@pytest.mark.parametrize("flags, precision", [
    ({"fpu", "avx512f", "amx_bf16", "amx_tile"}, "bf16"),
    ({"fpu", "avx512f", "avx512_bf16"}, "bf16"),
    ({"fpu", "avx2", "avx512f"}, "fp32"),
    (set(), "fp32"),
])
def test_auto_precision_follows_the_cpus_bf16_flags(flags, precision):
    plan = resolve_device("cpu", "auto", flags=flags)
    assert plan.precision == precision and plan.lm == plan.gnn == torch.device("cpu")
    assert "launch.precision=auto: the CPU has" in plan.describe()
    assert resolve_device("cpu", "fp32", flags={"amx_bf16"}).precision == "fp32"  # one key away
    assert resolve_device("cpu", "fp32", flags={"amx_bf16"}).describe() == CPU.describe()


def test_auto_precision_on_a_gpu_asks_torch():
    kw = dict(cuda_available=True, gpu_count=1, dgl_cuda=False)
    assert resolve_device("cuda", "auto", cuda_bf16=lambda: True, **kw).precision == "bf16"
    assert resolve_device("cuda", "auto", cuda_bf16=lambda: False, **kw).precision == "fp32"
    assert auto_precision("cuda", cuda_bf16=lambda: False) == ("fp32", "the GPU has no bf16")


def test_cpu_flags_reads_the_flags_lines(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512_bf16 amx_tile\n\n"
                    "processor\t: 1\nflags\t\t: fpu avx512_bf16 amx_tile\n")
    assert cpu_flags(str(info)) == {"fpu", "avx512_bf16", "amx_tile"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_the_mask_cast_gives_huggingfaces_mask_in_bf16():
    """The root cause of issue 25's error: BertModel builds its additive mask in float32
    (the embeddings' dtype under autocast) while SDPA's query is bf16; under CPU autocast the
    hook casts it, clamped to bf16's finite range (not rounded to -inf)."""
    mask = torch.tensor([0.0, torch.finfo(torch.float32).min]).view(1, 1, 1, 2)
    cast = MaskInComputeDtype()
    assert cast.cast(mask) is mask  # autocast off: unchanged
    with torch.autocast("cpu", torch.bfloat16):
        out = cast.cast(mask)
        assert cast.cast(mask) is out  # one cast per forward, shared by the layers
    assert out.dtype is torch.bfloat16
    assert out.flatten().tolist() == [0.0, torch.finfo(torch.bfloat16).min]
    with torch.autocast("cpu", torch.bfloat16):
        assert cast.cast(mask.bool()).dtype is torch.bool


def _padded_tokens(n=8, length=20, seed=0):
    """Token rows of different lengths ([CLS] first, right-padded with 0), lengths 4..length."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 3000, (n, length), generator=gen)
    ids[:, 0] = 101
    lengths = torch.linspace(4, length, n).long()
    for i, n_real in enumerate(lengths.tolist()):
        ids[i, n_real:] = 0
    return ids, lengths


def test_bf16_on_cpu_encodes_and_trains_with_padding(tiny_bert_dir):
    """Rows of different lengths (a real padding mask, which raised before issue 25): bf16
    encodes and trains a step; [CLS] is float32 and close to fp32's. Measured on the tiny
    BERT: cosine >= 0.99994 over 5 x 64 random rows (bf16 keeps 8 mantissa bits, so 1 - cos
    ~ 1e-5..1e-4); asserted > 0.999."""
    fp32, bf16 = LMEncoder(str(tiny_bert_dir)), LMEncoder(str(tiny_bert_dir), device=CPU_BF16)
    for lm in (fp32, bf16):
        lm.set_dropout(False)
    ids, _ = _padded_tokens()
    ref, out = fp32(ids), bf16(ids)
    assert out.dtype is torch.float32 and out.shape == ref.shape == (8, 32)
    cos = torch.nn.functional.cosine_similarity(out, ref)
    assert float(cos.min()) > 0.999 and not torch.equal(out, ref)
    enc = bf16.encode_no_grad(ids, batch_size=3)
    assert enc.dtype is torch.float32 and not enc.is_inference()  # usable in autograd later
    assert float(torch.nn.functional.cosine_similarity(enc, fp32.encode_no_grad(ids)).min()) \
        > 0.999
    opt = torch.optim.SGD(bf16.parameters(), lr=0.1)
    before = bf16.lm.encoder.layer[0].attention.self.query.weight.detach().clone()
    out.pow(2).sum().backward()
    opt.step()
    weight = bf16.lm.encoder.layer[0].attention.self.query.weight
    assert weight.dtype is torch.float32 and not torch.equal(weight.detach(), before)
    assert weight.grad.dtype is torch.float32 and float(weight.grad.abs().sum()) > 0


def test_bf16_padded_row_equals_the_row_unpadded(tiny_bert_dir):
    """A row in a padded batch gives (up to bf16 rounding) what it gives alone, unpadded: the
    mask hides the padding in bf16 as in fp32. Measured: max |diff| 0.012 on values up to 2.2
    (bf16's step at 2 is 0.008), cosine 1.0000; fp32 agrees to 1e-5."""
    fp32, bf16 = LMEncoder(str(tiny_bert_dir)), LMEncoder(str(tiny_bert_dir), device=CPU_BF16)
    ids, lengths = _padded_tokens()
    batch32, batch16 = fp32.encode_no_grad(ids), bf16.encode_no_grad(ids)
    for i in (0, 3):  # the shortest rows: most padding in the batch
        alone = ids[i:i + 1, :lengths[i]]
        assert torch.allclose(fp32.encode_no_grad(alone), batch32[i:i + 1], atol=1e-5)
        one = bf16.encode_no_grad(alone)
        scale = float(one.abs().max())
        assert float((one - batch16[i:i + 1]).abs().max()) < 0.02 * scale
        assert float(torch.nn.functional.cosine_similarity(one, batch16[i:i + 1])) > 0.9999


def test_stage3_inference_encodes_go_in_length_order_and_come_back_in_id_order(
        tmp_path, tiny_bert_dir, monkeypatch):
    """Stage 3's no-grad re-encodes (``JointInputs.encode``) of more nodes than one sub-batch
    are sorted by ``seq_len`` (each sub-batch then cut to its own longest row) and returned
    in the order asked; bf16, rows of lengths 2..8."""
    from test_trainer_units import toy_env, toy_graph

    from lmgnn_dist.data import subbatch
    from lmgnn_dist.trainer import joint_inputs
    from lmgnn_dist.trainer.builders import build_lms

    g, _ = toy_graph()
    tokens = g.nodes["paper"].data["input_ids"]
    lengths = 2 + torch.arange(len(tokens)) * 5 % 7  # 2..8, mixed: 2, 7, 5, 3, 8, ...
    tokens[torch.arange(8)[None, :] >= lengths[:, None]] = 0
    g.nodes["paper"].data["seq_len"] = lengths
    env = toy_env(tmp_path, g, lm=str(tiny_bert_dir), **{"stage3.lm_infer_batch_size": 3,
                                                         "launch.precision": "bf16"})
    env.device = CPU_BF16
    lms = build_lms(env.encoders, env.cfg.model, device=CPU_BF16)
    seen = []
    real = subbatch.encode_pipelined
    monkeypatch.setattr(joint_inputs, "encode_pipelined",
                        lambda lm, fetch, ids, *a, **k: seen.append(ids) or
                        real(lm, fetch, ids, *a, **k))
    nodes = joint_inputs.JointInputs(env, env.cfg.stage3, torch.Generator().manual_seed(0))
    ids = torch.tensor([5, 0, 13, 2, 8, 1, 11, 4])
    emb = nodes.encode(lms, "paper", ids)
    assert len(set(lengths[ids].tolist())) > 3 and not torch.equal(seen[0], ids)
    assert torch.equal(lengths[seen[0]], lengths[ids].sort(stable=True).values)
    one_by_one = torch.cat([lms.encoder("paper").encode_no_grad(tokens[i:i + 1]) for i in ids])
    assert emb.dtype is torch.float32 and emb.shape == one_by_one.shape
    assert float(torch.nn.functional.cosine_similarity(emb, one_by_one).min()) > 0.9999


@pytest.mark.parametrize("flags, warned", [
    ({"fpu", "avx", "avx2", "fma"}, True),  # AVX2 only (AMD EPYC 7xx3): bf16 is emulated
    ({"fpu", "avx512f", "avx512_bf16"}, False),
    ({"amx_bf16", "amx_tile"}, False),
])
def test_explicit_bf16_on_a_cpu_without_bf16_units_is_run_but_warned(flags, warned):
    plan = resolve_device("cpu", "bf16", flags=flags)
    assert plan.precision == "bf16" and plan.reason == ""
    assert bool(plan.warning) == warned
    if warned:
        assert "launch.precision=bf16" in plan.warning and "amx_bf16 or avx512_bf16" in plan.warning
    for other in ("fp32", "auto"):  # fp32 (asked or chosen by auto) is never warned about
        assert resolve_device("cpu", other, flags=flags).warning == ""
