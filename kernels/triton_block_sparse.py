"""Triton (CUDA) kernel for the block-local part of :func:`kernels.block_sparse_attention`.

.. warning::
   This kernel was written **without access to a GPU** and has never been launched on one.
   Its numerical check, ``tests/kernels/test_block_sparse_attention.py::
   test_triton_matches_reference`` (Triton vs the PyTorch reference in float16/bfloat16/
   float32), is **skipped on machines without CUDA**, as in CI: run it on a GPU before
   relying on this path. What was checked without a GPU: the kernel compiles to a cubin for
   sm_80 and sm_90 in all three dtypes with Triton 2.1
   (``test_triton_kernel_compiles_offline``), and, once, by hand, its program logic ran on
   CPU in a locally patched copy of Triton 2.1's interpreter (not part of this repository)
   and matched the float64 dense oracle (max abs error 7e-7 fp32, 9e-4 fp16, 7e-3 bf16).

Design (DyLGNN Algorithm 2 pattern, FlashAttention online softmax):

- one program per (batch * head, query block); the query tile is exactly one pattern block
  of ``BLOCK = block_size`` rows, so the "diagonal" key block has the same offsets;
- chunk 1: load the diagonal key/value block, mask padding keys, online-softmax update;
- chunk 2: gather the (few, padded to 16) global-token keys/values of this sequence, drop
  those lying inside the program's own block (already counted) and the ``-1`` entries,
  online-softmax update;
- normalise, zero padding query rows, store.

Global-token *query* rows (which attend to every key) are not handled here: the caller
overwrites them with a dense computation (a few rows per sequence), see
``kernels.block_sparse._overwrite_global_query_rows``.

Accumulation is float32; ``tl.dot`` runs on float16/bfloat16 inputs as given and, for
float32 inputs, with TF32 disabled so that results match the float32 reference.
This module imports ``triton`` at import time: import it only when CUDA is available
(``kernels.block_sparse`` does so lazily).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_HEAD_DIM = 256


def supports(q: torch.Tensor, block_size: int, num_global: int) -> bool:
    """Whether the kernel handles these inputs (otherwise the PyTorch reference is used).

    Needs a CUDA tensor of float16/bfloat16/float32, ``block_size`` a power of two in
    [16, 128] (``tl.dot`` tiles need >= 16 rows) and ``head_dim <= 256``.
    """
    return (q.is_cuda and q.dtype in _TRITON_DTYPES
            and 16 <= block_size <= 128 and block_size & (block_size - 1) == 0
            and 0 < q.shape[-1] <= _MAX_HEAD_DIM and num_global <= 64)


@triton.jit
def _online_softmax_step(m_i, l_i, acc, s, v, ALLOW_TF32: tl.constexpr):
    """FlashAttention update with one key chunk; ``s`` holds -inf on keys not attended."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet
    alpha = tl.exp(m_i - m_safe)
    p = tl.exp(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, allow_tf32=ALLOW_TF32)
    return m_new, l_i, acc


@triton.jit
def _block_local_fwd(
    Q, K, V, O, REAL, GIDX,
    stride_qb, stride_qh, stride_qs, stride_qd,
    stride_kb, stride_kh, stride_ks, stride_kd,
    stride_vb, stride_vh, stride_vs, stride_vd,
    stride_ob, stride_oh, stride_os, stride_od,
    stride_rb, stride_gb,
    H, S, D, G, scale,
    BLOCK: tl.constexpr, D_PAD: tl.constexpr, G_PAD: tl.constexpr, ALLOW_TF32: tl.constexpr,
):
    pid_bh = tl.program_id(0)  # batch * head on axis 0: its limit is 2**31 - 1, not 65535
    pid_m = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H

    offs_m = pid_m * BLOCK + tl.arange(0, BLOCK)  # query rows == diagonal key rows
    offs_d = tl.arange(0, D_PAD)
    row_in = offs_m < S
    d_in = offs_d < D
    tile_in = row_in[:, None] & d_in[None, :]

    q_base = Q + b * stride_qb + h * stride_qh
    k_base = K + b * stride_kb + h * stride_kh
    v_base = V + b * stride_vb + h * stride_vh
    q = tl.load(q_base + offs_m[:, None] * stride_qs + offs_d[None, :] * stride_qd,
                mask=tile_in, other=0.0)
    real = tl.load(REAL + b * stride_rb + offs_m, mask=row_in, other=0) != 0

    m_i = tl.full([BLOCK], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK, D_PAD], dtype=tl.float32)

    # chunk 1: the diagonal key block
    k = tl.load(k_base + offs_m[:, None] * stride_ks + offs_d[None, :] * stride_kd,
                mask=tile_in, other=0.0)
    v = tl.load(v_base + offs_m[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                mask=tile_in, other=0.0)
    s = tl.dot(q, tl.trans(k), allow_tf32=ALLOW_TF32) * scale
    s = tl.where(real[None, :], s, float("-inf"))
    m_i, l_i, acc = _online_softmax_step(m_i, l_i, acc, s, v, ALLOW_TF32)

    # chunk 2: global keys of this sequence outside the diagonal block
    offs_g = tl.arange(0, G_PAD)
    gidx = tl.load(GIDX + b * stride_gb + offs_g, mask=offs_g < G, other=-1)
    g_ok = (gidx >= 0) & ((gidx // BLOCK) != pid_m)
    g_safe = tl.where(gidx >= 0, gidx, 0)
    g_tile = g_ok[:, None] & d_in[None, :]
    kg = tl.load(k_base + g_safe[:, None] * stride_ks + offs_d[None, :] * stride_kd,
                 mask=g_tile, other=0.0)
    vg = tl.load(v_base + g_safe[:, None] * stride_vs + offs_d[None, :] * stride_vd,
                 mask=g_tile, other=0.0)
    s = tl.dot(q, tl.trans(kg), allow_tf32=ALLOW_TF32) * scale
    s = tl.where(g_ok[None, :], s, float("-inf"))
    m_i, l_i, acc = _online_softmax_step(m_i, l_i, acc, s, vg, ALLOW_TF32)

    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    out = tl.where(real[:, None], out, 0.0)  # padding query rows -> 0
    o_base = O + b * stride_ob + h * stride_oh
    tl.store(o_base + offs_m[:, None] * stride_os + offs_d[None, :] * stride_od,
             out.to(O.dtype.element_ty), mask=tile_in)


def block_local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          real: torch.Tensor, gidx: torch.Tensor,
                          block_size: int, scale: float) -> torch.Tensor:
    """Launch the kernel; inputs already validated by ``block_sparse_attention``.

    q, k, v : CUDA ``[B, H, S, D]`` float16/bfloat16/float32, any strides.
    real : bool ``[B, S]`` (True = real token); gidx : int64 ``[B, G]`` (-1 = none).
    Returns ``[B, H, S, D]`` (contiguous, dtype of ``q``); global-query rows still hold the
    block-local result and must be overwritten by the caller.
    """
    B, H, S, D = q.shape
    G = gidx.shape[1]
    out = torch.empty((B, H, S, D), dtype=q.dtype, device=q.device)
    real_i8 = real.to(device=q.device, dtype=torch.int8).contiguous()
    gidx_i32 = gidx.to(device=q.device, dtype=torch.int32).contiguous()
    if G == 0:  # keep a valid pointer; the kernel masks every entry (offs_g < 0 is False)
        gidx_i32 = torch.full((B, 1), -1, dtype=torch.int32, device=q.device)
    grid = (B * H, triton.cdiv(S, block_size))
    _block_local_fwd[grid](
        q, k, v, out, real_i8, gidx_i32,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(),
        real_i8.stride(0), gidx_i32.stride(0),
        H, S, D, G, float(scale),
        BLOCK=block_size,
        D_PAD=max(16, triton.next_power_of_2(D)),
        G_PAD=max(16, triton.next_power_of_2(max(G, 1))),
        ALLOW_TF32=False,
        num_warps=4 if block_size <= 64 else 8,
    )
    return out
