"""The block-sparse pattern: which (query, key) pairs :func:`kernels.block_sparse_attention` uses.

Input handling shared by the op and the BERT hook (:mod:`kernels.bert_sparse`): the padding
mask normalised to bool ``True`` = real token, the positions of the global tokens of each
sequence, the ``block_size`` / ``global_tokens`` argument checks; and
:func:`block_sparse_mask`, the pattern as a dense bool mask (the tests' oracle). Moved here
from :mod:`kernels.block_sparse`, which re-exports the public names. Imports only ``torch``.
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch

GlobalTokens = Sequence[Union[str, int]]


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
