"""Block-sparse attention inside a Hugging Face BERT encoder, for no-grad encoding only.

:func:`sparse_attention_enabled` is a context manager that, while active, replaces the
``forward`` of the ``BertSelfAttention`` / ``BertSdpaSelfAttention`` modules of layers
``>= first_dense_layers`` (``model.encoder.layer[i].attention.self``) by a wrapper that

- runs :func:`kernels.block_sparse_attention` (DyLGNN Algorithm 2: own block + global
  [CLS]/[SEP] tokens) when gradient is disabled (``torch.no_grad()`` /
  ``torch.inference_mode()``) and the module is in eval mode;
- otherwise calls the original ``forward`` unchanged, so with gradient enabled (or in
  training mode, where attention dropout would apply) the model is exactly the dense one.

Cases the sparse path cannot express also fall back to the original ``forward``:
cross-attention, a KV cache, ``head_mask``, ``output_attentions=True``, relative position
embeddings, decoders, and attention masks that are not a per-key padding mask.

The first ``first_dense_layers`` layers stay dense (DyLGNN keeps early layers dense; their
attention is less local). On exit the original ``forward`` attributes are restored.

Hidden states at *padding* positions differ from the dense model (the sparse op returns
zeros for padding query rows); real tokens never attend to padding, so this does not reach
them. Tested with transformers 4.55 (``BertModel`` of all-MiniLM-L6-v2, which loads the
``sdpa`` attention class by default; ``attn_implementation="eager"`` is handled as well).
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterator, Optional, Sequence, Union

import torch
from torch import nn

from .block_sparse import block_sparse_attention
from .block_sparse_pattern import _check_block_size, _check_global_tokens

_UNSUPPORTED = object()  # marker: this attention mask cannot be a key padding mask


def additive_mask_to_key_padding_mask(attention_mask: Optional[torch.Tensor], batch: int,
                                      seq_len: int):
    """Turn the extended mask HF passes to self-attention into bool ``[batch, seq]``.

    ``attention_mask`` : ``None`` (no padding), or additive float ``[batch|1, 1, 1|seq, seq]``
    with 0 on real keys and a large negative value (``finfo.min``, or -10000 in older
    releases) on padding; a bool mask of that shape (True = attend) is accepted too.

    Returns ``None`` (all real), the bool mask (True = real token), or the module-private
    ``_UNSUPPORTED`` marker when the mask is not a per-key padding mask (rows differ between
    queries, or values other than 0 / large negative), in which case the caller stays dense.
    """
    if attention_mask is None:
        return None
    m = attention_mask
    if m.dim() != 4 or m.shape[1] != 1 or m.shape[-1] != seq_len or m.shape[0] not in (1, batch):
        return _UNSUPPORTED
    if m.shape[2] != 1 and not bool((m == m[:, :, :1]).all()):
        return _UNSUPPORTED  # e.g. a causal or per-query mask
    row = m[:, 0, 0, :]
    if row.dtype == torch.bool:
        real = row
    else:
        real = row == 0
        if not bool((real | (row <= -1e4)).all()):
            return _UNSUPPORTED  # a soft additive bias, not a padding mask
    return real.expand(batch, seq_len)


def _base_model(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)  # BertForX -> its BertModel
    if not hasattr(base, "encoder") or not hasattr(base.encoder, "layer"):
        raise ValueError("expected a Hugging Face BERT-style model with .encoder.layer "
                         f"(or .base_model.encoder.layer), got {type(model).__name__}")
    return base


def _make_sparse_forward(module: nn.Module, original, block_size: int,
                         global_tokens: Sequence[Union[str, int]]):
    """A ``forward`` for one self-attention module: sparse when allowed, else ``original``."""
    signature = inspect.signature(original)

    def forward(hidden_states, *args, **kwargs):
        if torch.is_grad_enabled() or module.training:
            return original(hidden_states, *args, **kwargs)
        call = signature.bind(hidden_states, *args, **kwargs).arguments
        past = call.get("past_key_value", call.get("past_key_values"))
        if (call.get("encoder_hidden_states") is not None or past is not None
                or call.get("head_mask") is not None or call.get("output_attentions")
                or getattr(module, "position_embedding_type", "absolute") != "absolute"
                or getattr(module, "is_decoder", False) or hidden_states.dim() != 3):
            return original(hidden_states, *args, **kwargs)
        batch, seq_len, _ = hidden_states.shape
        real = additive_mask_to_key_padding_mask(call.get("attention_mask"), batch, seq_len)
        if real is _UNSUPPORTED:
            return original(hidden_states, *args, **kwargs)

        heads, head_dim = module.num_attention_heads, module.attention_head_size

        def split_heads(x):  # [B, S, heads*head_dim] -> [B, heads, S, head_dim]
            return x.view(batch, seq_len, heads, head_dim).transpose(1, 2)

        q = split_heads(module.query(hidden_states))
        k = split_heads(module.key(hidden_states))
        v = split_heads(module.value(hidden_states))
        out = block_sparse_attention(q, k, v, key_padding_mask=real, block_size=block_size,
                                     global_tokens=global_tokens)
        out = out.transpose(1, 2).reshape(batch, seq_len, heads * head_dim)
        return out, None  # (context, attention probs) as BertSelfAttention/Sdpa return

    return forward


@contextlib.contextmanager
def sparse_attention_enabled(model: nn.Module, block_size: int = 16,
                             first_dense_layers: int = 2,
                             global_tokens: Sequence[Union[str, int]] = ("first", "last"),
                             ) -> Iterator[nn.Module]:
    """Use block-sparse self-attention in layers ``>= first_dense_layers`` under no-grad.

    Parameters
    ----------
    model : a Hugging Face ``BertModel`` (or a ``BertFor...`` head model, via
        ``model.base_model``); self-attention modules are found at
        ``encoder.layer[i].attention.self`` (eager ``BertSelfAttention`` or
        ``BertSdpaSelfAttention``).
    block_size, global_tokens : passed to :func:`kernels.block_sparse_attention`.
    first_dense_layers : how many leading layers stay dense (0 = all layers sparse).

    Yields the model. While active, with ``torch.is_grad_enabled()`` False and the model in
    eval mode, the patched layers run the sparse op; otherwise everything is unchanged
    (bit-identical to the dense model). Inputs: the usual ``input_ids``/``attention_mask``
    (right or left padding). Output shapes/dtypes are the model's own.

    Raises
    ------
    ValueError : ``model`` has no ``encoder.layer``, a layer has no ``attention.self``
        module, ``first_dense_layers`` is negative, or ``block_size``/``global_tokens`` are
        invalid (unknown string, non-positive block size; int positions are checked against
        the sequence length on each call).
    """
    block_size = _check_block_size(block_size)
    global_tokens = _check_global_tokens(global_tokens)
    for tok in global_tokens:
        if not (tok in ("first", "last") or (isinstance(tok, int) and not isinstance(tok, bool))):
            raise ValueError(f"global token must be 'first', 'last' or an int, got {tok!r}")
    if isinstance(first_dense_layers, bool) or not isinstance(first_dense_layers, int) \
            or first_dense_layers < 0:
        raise ValueError(f"first_dense_layers must be an int >= 0, got {first_dense_layers!r}")
    layers = _base_model(model).encoder.layer
    patched = []  # (module, had its own forward attribute, that attribute)
    try:
        for layer in list(layers)[first_dense_layers:]:
            attn = getattr(getattr(layer, "attention", None), "self", None)
            if attn is None or not hasattr(attn, "query"):
                raise ValueError(f"layer {type(layer).__name__} has no attention.self module")
            own = attn.__dict__.get("forward")
            patched.append((attn, "forward" in attn.__dict__, own))
            attn.forward = _make_sparse_forward(attn, attn.forward, block_size, global_tokens)
        yield model
    finally:
        for attn, had_own, own in reversed(patched):
            if had_own:
                attn.forward = own
            else:
                del attn.forward
