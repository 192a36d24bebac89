"""Block-sparse self-attention for encoding low-degree inference nodes without gradient.

DyLGNN (Algorithm 2) observes that attention in the text encoder concentrates on the
diagonal and on a global token, so nodes encoded without gradient can use a sparse pattern:

- every query attends to the keys of its own block of ``block_size`` positions
  (the block-diagonal: block ``i`` holds positions ``[i * block_size, (i + 1) * block_size)``);
- every query also attends to the *global tokens*, by default the first real token ([CLS] in
  BERT) and the last real token of each sequence ([SEP], found from that sequence's mask);
- global-token queries attend to every real key, so [CLS] still sees the whole text;
- padding keys are never attended; padding query rows are returned as zeros.

The softmax over the union of these keys is computed with the online (running max + running
sum) softmax of FlashAttention (Dao et al., 2022, Algorithm 1): key chunks are visited one
after the other, the partial sums are rescaled by ``exp(m_old - m_new)`` whenever the
running maximum grows, and nothing is normalised until the end. The PyTorch reference
(:mod:`kernels.torch_block_sparse`) visits the two chunks (own block, then global keys) exactly
as the Triton kernel in :mod:`kernels.triton_block_sparse` does; the few global-query rows are
computed densely (here, for both).

Mask convention (the same as Hugging Face's ``attention_mask``): ``key_padding_mask`` is
``True`` (or ``1``) for a **real token** and ``False`` (``0``) for padding. This is the
opposite of ``torch.nn.MultiheadAttention``'s ``key_padding_mask`` (``True`` = ignore).

Layout: this module is the public op (argument checks, backend choice, the global-query
rows). The pattern (padding-mask and global-token handling, argument checks,
:func:`block_sparse_mask`) is in :mod:`kernels.block_sparse_pattern`, the PyTorch reference
for the block-local rows in :mod:`kernels.torch_block_sparse`; both were moved out of this
module and their public names are re-exported here.

This module imports only ``torch`` (never DGL); Triton is imported lazily, only for CUDA
tensors. The Triton path was written without GPU access: its numerical test against this
reference is skipped on machines without CUDA (see :mod:`kernels.triton_block_sparse`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .block_sparse_pattern import (GlobalTokens, _check_block_size, _check_global_tokens,
                                   as_real_token_mask, block_sparse_mask, global_token_indices)
from .torch_block_sparse import _reference_block_local

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BACKENDS = ("auto", "torch", "triton")


# --------------------------------------------------------------------------- global-query rows

def _overwrite_global_query_rows(out, q, k, v, real, gidx, scale: float) -> None:
    """Global-token queries attend to every real key: dense rows written into ``out`` in place.

    Only ``G`` rows per sequence, so a plain (numerically stable) masked softmax is used;
    accumulation is in float32 for half-precision inputs.
    """
    B, H, S, D = q.shape
    G = gidx.shape[1]
    valid = gidx >= 0
    if G == 0 or not bool(valid.any()):
        return
    cdt = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    take = gidx.clamp(min=0)[:, None, :, None].expand(B, H, G, D)
    qg = q.gather(2, take).to(cdt)  # [B, H, G, D]
    s = torch.matmul(qg, k.to(cdt).transpose(-1, -2)) * scale  # [B, H, G, S]
    s = s.masked_fill(~real[:, None, None, :], float("-inf"))
    rows = torch.matmul(torch.softmax(s, dim=-1), v.to(cdt))  # [B, H, G, D]
    b_idx, g_idx = valid.nonzero(as_tuple=True)
    out[b_idx, :, gidx[b_idx, g_idx]] = rows[b_idx, :, g_idx].to(out.dtype)


# --------------------------------------------------------------------------- public op

def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           key_padding_mask: Optional[torch.Tensor] = None,
                           block_size: int = 16,
                           global_tokens: GlobalTokens = ("first", "last"),
                           scale: Optional[float] = None,
                           backend: str = "auto") -> torch.Tensor:
    """Block-diagonal + global-token self-attention (DyLGNN Algorithm 2), forward only.

    Parameters
    ----------
    q, k, v : ``[batch, heads, seq, head_dim]``, same shape, dtype (float16, bfloat16,
        float32 or float64) and device. Any strides (e.g. the transposed views of HF BERT).
    key_padding_mask : optional ``[batch, seq]``, **True / 1 = real token**, False / 0 =
        padding (Hugging Face ``attention_mask`` convention; the opposite of
        ``torch.nn.MultiheadAttention``). bool or integer 0/1; ``None`` = no padding.
    block_size : queries in block ``i`` (positions ``[i*block_size, (i+1)*block_size)``)
        attend to the keys of block ``i``; ``seq`` need not be a multiple of it.
        ``block_size >= seq`` gives plain dense attention.
    global_tokens : keys every query attends to, and queries that attend to every key:
        ``"first"`` (first real token, [CLS]), ``"last"`` (last real token of each sequence,
        [SEP]), or int positions. ``()`` gives pure block-diagonal attention.
    scale : softmax scale, default ``1 / sqrt(head_dim)``.
    backend : ``"auto"`` (Triton for supported CUDA inputs, else PyTorch), ``"torch"``
        (the reference, any device) or ``"triton"``.

    Returns
    -------
    ``[batch, heads, seq, head_dim]`` in the dtype of ``q``: for each real query the softmax
    over its allowed keys (see :func:`block_sparse_mask`) times ``v``, computed with the
    FlashAttention online softmax; **padding query rows are zeros**.
    Half-precision inputs are accumulated in float32. No autograd support is promised
    (the Triton path has no backward); it is meant for ``torch.no_grad()`` encoding.

    Raises
    ------
    TypeError  : non-tensor inputs, a non-floating dtype, a float ``key_padding_mask``.
    ValueError : ``q``/``k``/``v`` not 4-D, shapes/dtypes/devices differ, mask of the wrong
        shape or values, bad ``block_size``, ``global_tokens``, ``scale`` or ``backend``.
    RuntimeError : ``backend="triton"`` when Triton/CUDA cannot run these inputs.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be [batch, heads, seq, head_dim] (4-D), "
                             f"got shape {list(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError("q, k and v must have the same shape [batch, heads, seq, head_dim], "
                         f"got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
    if any(t.dtype not in _FLOAT_DTYPES for t in (q, k, v)):
        raise TypeError("q, k and v must be float16/bfloat16/float32/float64, got "
                        f"{q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k and v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v are on different devices: {q.device}, {k.device}, {v.device}")
    block_size = _check_block_size(block_size)
    global_tokens = _check_global_tokens(global_tokens)
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    B, H, S, D = q.shape
    if scale is None:
        scale = 1.0 / math.sqrt(D) if D else 1.0
    elif not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")

    if key_padding_mask is None:
        real = torch.ones(B, S, dtype=torch.bool, device=q.device)
    else:
        real = as_real_token_mask(key_padding_mask, B, S).to(q.device)
    if q.numel() == 0:
        return torch.zeros_like(q)
    gidx = global_token_indices(real, global_tokens)

    use_triton = False
    if backend != "torch" and q.is_cuda:
        try:
            from . import triton_block_sparse  # lazy: needs triton and a GPU
        except ImportError:
            if backend == "triton":
                raise
        else:
            use_triton = triton_block_sparse.supports(q, block_size, gidx.shape[1])
    if backend == "triton" and not use_triton:
        raise RuntimeError("backend='triton' needs CUDA tensors of float16/bfloat16/float32, "
                           "block_size a power of two in [16, 128] and head_dim <= 256")
    if use_triton:
        out = triton_block_sparse.block_local_attention(q, k, v, real, gidx, block_size, scale)
    else:
        # batched matmuls copy strided inputs (e.g. HF's [B, S, H, D] views) on every call:
        # copy once here instead of once per matmul
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out = _reference_block_local(q, k, v, real, gidx, block_size, scale)
    _overwrite_global_query_rows(out, q, k, v, real, gidx, scale)
    return out


__all__ = ["block_sparse_attention", "block_sparse_mask", "as_real_token_mask",
           "global_token_indices"]
