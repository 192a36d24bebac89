"""PyTorch reference for the block-local part of :func:`kernels.block_sparse_attention`.

Rows of non-global queries: their own key block, then the global keys, with the
FlashAttention online softmax, visiting the chunks exactly as the Triton kernel in
:mod:`kernels.triton_block_sparse` does (see :mod:`kernels.block_sparse` for the pattern
and the method). Used on CPU and wherever the Triton kernel does not apply. Moved here from
:mod:`kernels.block_sparse`. Imports only ``torch``.
"""
from __future__ import annotations

import torch


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
