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
running maximum grows, and nothing is normalised until the end. The PyTorch reference below
visits the two chunks (own block, then global keys) exactly as the Triton kernel in
:mod:`kernels.triton_block_sparse` does; the few global-query rows are computed densely.

Mask convention (the same as Hugging Face's ``attention_mask``): ``key_padding_mask`` is
``True`` (or ``1``) for a **real token** and ``False`` (``0``) for padding. This is the
opposite of ``torch.nn.MultiheadAttention``'s ``key_padding_mask`` (``True`` = ignore).

This module imports only ``torch`` (never DGL); Triton is imported lazily, only for CUDA
tensors. The Triton path was written without GPU access: its numerical test against this
reference is skipped on machines without CUDA (see :mod:`kernels.triton_block_sparse`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import torch

GlobalTokens = Sequence[Union[str, int]]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_BACKENDS = ("auto", "torch", "triton")


# --------------------------------------------------------------------------- input handling

def as_real_token_mask(mask: torch.Tensor, batch: int, seq_len: int) -> torch.Tensor:
    """Normalise a padding mask to bool ``[batch, seq_len]``, ``True`` = real token.

    Accepts ``bool`` (``True`` = real) or an integer 0/1 mask in the Hugging Face convention
    (``1`` = real). Float masks are rejected because ``0.`` means "keep" in additive masks
    but "padding" in 0/1 masks; convert them first (``mask.bool()`` for 0/1 floats,
    ``mask == 0`` for additive masks).

    Raises
    ------
    TypeError  : ``mask`` is not a tensor, or is a float/complex tensor.
    ValueError : wrong shape, or an integer mask with values other than 0 and 1.
    """
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"key_padding_mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(
            f"key_padding_mask must be bool (True = real token) or an integer 0/1 mask, got "
            f"{mask.dtype}; float masks are ambiguous (additive vs 0/1): pass mask.bool() for a "
            f"0/1 mask or (mask == 0) for an additive 0/-inf mask")
    if tuple(mask.shape) != (batch, seq_len):
        raise ValueError(
            f"key_padding_mask must have shape [batch, seq] = [{batch}, {seq_len}], "
            f"got {list(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if mask.numel() and not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("an integer key_padding_mask must contain only 0 (padding) and 1 (real)")
    return mask != 0


def global_token_indices(real: torch.Tensor, global_tokens: GlobalTokens) -> torch.Tensor:
    """Positions of the global tokens of each sequence.

    Parameters
    ----------
    real : bool ``[batch, seq]``, ``True`` = real token.
    global_tokens : entries ``"first"`` (first real token, [CLS]), ``"last"`` (last real
        token, [SEP]; depends on each sequence's length) or a non-negative ``int`` position.

    Returns
    -------
    int64 ``[batch, len(global_tokens)]``: the position, or ``-1`` where the sequence has no
    such token (empty sequence, an ``int`` position that is padding) or where it repeats an
    earlier entry (e.g. ``"first" == "last"`` for a one-token sequence), so that every key is
    counted once in the softmax.

    Raises
    ------
    ValueError : an unknown string, a negative int, or an int position ``>= seq``.
    """
    batch, seq_len = real.shape
    cols = []
    has_any = real.any(dim=1)
    for tok in global_tokens:
        if isinstance(tok, str):
            if tok == "first":
                pos = real.to(torch.int8).argmax(dim=1)  # argmax returns the first maximum
            elif tok == "last":
                pos = seq_len - 1 - real.flip(1).to(torch.int8).argmax(dim=1)
            else:
                raise ValueError(f"global token must be 'first', 'last' or an int, got {tok!r}")
            cols.append(torch.where(has_any, pos, torch.full_like(pos, -1)))
        elif isinstance(tok, int) and not isinstance(tok, bool):
            if not 0 <= tok < seq_len:
                raise ValueError(f"global token position {tok} is outside [0, {seq_len})")
            pos = torch.full((batch,), tok, dtype=torch.long, device=real.device)
            cols.append(torch.where(real[:, tok], pos, torch.full_like(pos, -1)))
        else:
            raise ValueError(f"global token must be 'first', 'last' or an int, got {tok!r}")
    if not cols:
        return torch.empty(batch, 0, dtype=torch.long, device=real.device)
    gidx = torch.stack(cols, dim=1).long()
    for g in range(1, gidx.shape[1]):  # drop repeats of an earlier global token
        dup = (gidx[:, g:g + 1] == gidx[:, :g]).any(dim=1)
        gidx[:, g] = torch.where(dup, torch.full_like(gidx[:, g], -1), gidx[:, g])
    return gidx


def _check_block_size(block_size) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    return block_size


def _check_global_tokens(global_tokens) -> Tuple[Union[str, int], ...]:
    if isinstance(global_tokens, (str, int)):
        raise ValueError("global_tokens must be a sequence such as ('first', 'last'), got "
                         f"{global_tokens!r}")
    return tuple(global_tokens)


# --------------------------------------------------------------------------- the pattern

def block_sparse_mask(seq_len: int,
                      lengths_or_padding_mask: Union[torch.Tensor, Sequence[int]],
                      block_size: int = 16,
                      global_tokens: GlobalTokens = ("first", "last")) -> torch.Tensor:
    """The allowed (query, key) pairs of :func:`block_sparse_attention`, as a dense mask.

    Parameters
    ----------
    seq_len : padded sequence length ``S``.
    lengths_or_padding_mask : either the lengths, int ``[batch]`` (right padding: positions
        ``< length`` are real), or a padding mask ``[batch, S]``: bool (``True`` = real token)
        or integer 0/1 (``1`` = real, Hugging Face convention).
    block_size, global_tokens : as in :func:`block_sparse_attention`.

    Returns
    -------
    bool ``[batch, S, S]``: ``out[b, q, k]`` is True iff query ``q`` may attend to key ``k``,
    i.e. both are real tokens and (same block, or ``k`` is a global token, or ``q`` is a
    global token). Rows of padding queries are all False.

    Raises
    ------
    ValueError : lengths outside ``[0, S]``, mask of the wrong shape, bad ``block_size`` or
        ``global_tokens``. TypeError : float mask or lengths.
    """
    block_size = _check_block_size(block_size)
    global_tokens = _check_global_tokens(global_tokens)
    x = torch.as_tensor(lengths_or_padding_mask)
    if x.dim() == 1:
        if x.dtype.is_floating_point or x.dtype == torch.bool:
            raise TypeError(f"lengths must be integers, got {x.dtype}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > seq_len):
            raise ValueError(f"lengths must lie in [0, {seq_len}], got {x.tolist()}")
        real = torch.arange(seq_len, device=x.device)[None, :] < x[:, None]
    elif x.dim() == 2:
        real = as_real_token_mask(x, x.shape[0], seq_len)
    else:
        raise ValueError("lengths_or_padding_mask must be lengths [batch] or a mask [batch, seq],"
                         f" got a tensor with {x.dim()} dims")
    batch = real.shape[0]
    gidx = global_token_indices(real, global_tokens)
    pos = torch.arange(seq_len, device=real.device)
    same_block = (pos[:, None] // block_size) == (pos[None, :] // block_size)  # [S, S]
    is_global = torch.zeros(batch, seq_len + 1, dtype=torch.bool, device=real.device)
    is_global.scatter_(1, torch.where(gidx >= 0, gidx, seq_len), True)  # -1 -> spare column
    is_global = is_global[:, :seq_len]
    allowed = same_block[None] | is_global[:, None, :] | is_global[:, :, None]
    return allowed & real[:, None, :] & real[:, :, None]


# --------------------------------------------------------------------------- PyTorch reference

def _online_softmax_step(state, scores: torch.Tensor, v: torch.Tensor):
    """One FlashAttention online-softmax update with a new key chunk.

    ``state``: ``None`` before the first chunk, else ``(m, l, acc)`` = running max
    ``[..., M]``, running sum ``[..., M]`` and unnormalised output ``[..., M, D]``.
    ``scores``: ``[..., M, N]`` with ``-inf`` on keys not attended; ``v``: ``[..., N, D]``.
    Rows that have seen no key keep ``m = -inf`` and ``l = acc = 0``.
    """
    chunk_max = scores.amax(dim=-1)
    m_new = chunk_max if state is None else torch.maximum(state[0], chunk_max)
    m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)  # avoid (-inf) - (-inf) = nan
    p = torch.exp(scores - m_safe[..., None])
    l, acc = p.sum(dim=-1), torch.matmul(p, v)
    if state is not None:
        m_old, l_old, acc_old = state
        alpha = torch.exp(m_old - m_safe)  # rescales what was summed under the old maximum
        l = l.addcmul_(alpha, l_old)
        acc = acc.addcmul_(alpha[..., None], acc_old)
    return m_new, l, acc


def _reference_block_local(q, k, v, real, gidx, block_size: int, scale: float) -> torch.Tensor:
    """Rows of non-global queries: own key block, then the global keys (online softmax).

    Shapes as in :func:`block_sparse_attention`; returns ``[B, H, S, D]`` in ``q.dtype``
    with zeros on padding query rows. Global-query rows are overwritten by the caller.
    Mirrors the Triton kernel: one query block = one key block, then one global-key chunk.
    """
    B, H, S, D = q.shape
    out_dtype = q.dtype
    if q.dtype in (torch.float16, torch.bfloat16):  # accumulate in float32, like the kernel
        q, k, v = q.float(), k.float(), v.float()
    bs = min(block_size, S)  # block_size >= S is the single-block (dense) pattern
    nb = -(-S // bs)
    pad = nb * bs - S
    real_p = real
    if pad:
        q, k, v = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        real_p = torch.nn.functional.pad(real, (0, pad), value=False)
    Sp = nb * bs

    # chunk 1: the query's own (diagonal) key block, padding keys masked
    s = torch.matmul(q.reshape(B, H, nb, bs, D), k.reshape(B, H, nb, bs, D).transpose(-1, -2))
    s = (s * scale).masked_fill(~real_p.reshape(B, 1, nb, 1, bs), float("-inf"))
    state = _online_softmax_step(None, s, v.reshape(B, H, nb, bs, D))
    state = tuple(t.reshape(B, H, Sp, *t.shape[4:]) for t in state)  # back to rows [.., Sp]

    # chunk 2: the global keys, except those inside the query's own block (already counted)
    G = gidx.shape[1]
    if G:
        safe = gidx.clamp(min=0)
        take = safe[:, None, :, None].expand(B, H, G, D)
        kg, vg = k.gather(2, take), v.gather(2, take)  # [B, H, G, D]
        s = torch.matmul(q, kg.transpose(-1, -2)) * scale  # [B, H, Sp, G]
        query_block = torch.arange(Sp, device=q.device) // bs
        ok = (gidx[:, None, :] >= 0) & ((safe // bs)[:, None, :] != query_block[None, :, None])
        s = s.masked_fill(~ok[:, None], float("-inf"))  # ok: [B, Sp, G]
        state = _online_softmax_step(state, s, vg)

    _, l, acc = state
    out = (acc / l.clamp(min=torch.finfo(l.dtype).tiny)[..., None])[:, :, :S]
    if not bool(real.all()):
        out = out.masked_fill(~real[:, None, :, None], 0.0)  # padding query rows -> 0
    return out.to(out_dtype)


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
