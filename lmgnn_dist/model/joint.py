"""Models of the three stages, each one ``nn.Module`` so ``DistributedDataParallel`` wraps it.

- :class:`NodeLMs`: the run's text encoders, one shared LM and/or one per node type.
- :class:`LMLinkPredictor` (stage 1): LM (pooled) -> DistMult -> logistic loss (eq. 2).
- :class:`TaskModel` (stage 2): fixed input embeddings -> RGCN (eq. 1) -> task decoder -> loss.
- :class:`JointModel` (stage 3): LMs with back-prop on a node subset -> :class:`TaskModel`.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Tuple

import torch
from torch import nn

from .decoders import DistMultDecoder, logistic_loss
from .lm import LMEncoder

#: ModuleDict key of the LM shared by every node type that does not have its own
SHARED = "shared"


def own_key(ntype: str) -> str:
    """ModuleDict key of node type ``ntype``'s own LM."""
    return f"own_{ntype}"


def mix_embeddings(h_train: torch.Tensor, train_idx: torch.Tensor,
                   h_infer: torch.Tensor, infer_idx: torch.Tensor) -> torch.Tensor:
    """Assemble input-node embeddings from with-grad and no-grad parts (back-prop on samples).

    Shapes: ``h_train`` ``[T, D]`` at positions ``train_idx`` ``[T]``, ``h_infer`` ``[I, D]`` at
    ``infer_idx`` ``[I]`` -> ``[T + I, D]`` on ``h_train``'s device (``h_infer`` may come from
    the CPU-side cache). Gradient flows only into ``h_train``.
    """
    n, dev = len(train_idx) + len(infer_idx), h_train.device
    out = torch.zeros(n, h_train.shape[1], dtype=h_train.dtype, device=dev)
    out = out.index_put((infer_idx.to(dev),), h_infer.detach().to(dev, h_train.dtype))
    return out.index_put((train_idx.to(dev),), h_train)


class NodeLMs(nn.Module):
    """The text encoders of a run: node type -> LM (``model.encoders``).

    Node types mapped to :data:`SHARED` use one LM; a node type with its own model path has
    its own copy (key :func:`own_key`). All LMs must have the same hidden size (DistMult in
    stage 1 and the RGCN's shared self-loop weight compare/mix the types' embeddings).

    Shapes: :meth:`forward` takes ntype -> int token ids ``[N_t, L]`` and returns ntype ->
    float32 ``[N_t, out_dim]`` pooled embeddings with autograd; node types sharing an LM go
    through it in one forward pass.

    Raises ValueError naming the node types if the hidden sizes differ.
    """

    def __init__(self, lms: Dict[str, LMEncoder], lm_of: Dict[str, str]):
        super().__init__()
        self.lms = nn.ModuleDict(lms)
        self.lm_of = dict(lm_of)
        dims = {nt: lms[k].out_dim for nt, k in lm_of.items()}
        if len(set(dims.values())) > 1:
            raise ValueError(f"the node types' LMs have different hidden sizes {dims}; all "
                             "encoders of a run must produce the same width")
        self.out_dim = next(iter(dims.values())) if dims else 0

    def encoder(self, ntype: str) -> LMEncoder:
        return self.lms[self.lm_of[ntype]]

    def pooling(self) -> Dict[str, str]:
        """LM key -> its resolved pooling (``cls``, ``mean+normalize``, ...): what a stage
        records as ``pooling`` in its metrics."""
        return {key: str(lm.pooling) for key, lm in self.lms.items()}

    def lora(self) -> Dict[str, dict]:
        """LM key -> ``{"rank", "trainable", "total"}`` (LoRA rank, trained and all parameter
        counts) for each LM carrying LoRA adapters (:mod:`~.lora`); empty when none does."""
        return {key: {"rank": lm.lora_rank,
                      "trainable": sum(p.numel() for p in lm.parameters() if p.requires_grad),
                      "total": sum(p.numel() for p in lm.parameters())}
                for key, lm in self.lms.items() if lm.lora_rank}

    def weights_key(self) -> str:
        """Which LM weights these are: SHA-1 over every LM's architecture (its config),
        pooling and tensors (parameters and buffers, in ``state_dict`` order), plus the
        node-type map.
        Equal for equal weights wherever they were loaded from (LoRA adapters count merged);
        the LM-embedding cache is keyed by it (as GraphStorm keys its cache by model name +
        weight hash). Hashing MiniLM's 22.7M parameters takes ~0.1-0.3 s on one CPU core
        (plus ~0.3 s to merge a copy of an adapted LM)."""
        import hashlib
        import json

        h = hashlib.sha1(json.dumps(self.lm_of, sort_keys=True).encode())
        for key in sorted(self.lms):
            lm, plain = self.lms[key], self.lms[key].plain_lm()  # LoRA merged
            h.update(key.encode())
            arch = {k: v for k, v in plain.config.to_dict().items()
                    if not k.startswith("_") and k != "transformers_version"}
            h.update(json.dumps(arch, sort_keys=True, default=str).encode())
            h.update(repr(lm.sparse).encode())
            h.update(str(lm.pooling).encode())
            for name, t in plain.state_dict().items():
                h.update(name.encode())
                h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
        return h.hexdigest()

    def set_dropout(self, on: bool) -> None:
        """Train mode (dropout) or eval mode for every LM; gradients flow either way."""
        for lm in self.lms.values():
            lm.set_dropout(on)

    def forward(self, tokens: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        by_key: Dict[str, List[str]] = {}
        for nt in tokens:
            by_key.setdefault(self.lm_of[nt], []).append(nt)
        out = {}
        for key, nts in by_key.items():
            h = self.lms[key](torch.cat([tokens[nt] for nt in nts]))
            for nt, part in zip(nts, torch.split(h, [len(tokens[nt]) for nt in nts])):
                out[nt] = part
        return out


class LMLinkPredictor(nn.Module):
    """Stage 1: graph-aware LM pre-fine-tuning on link prediction (LM-GNN §3.1).

    ``forward(tokens, src_pos, dst_pos, neg_pos, cetype)``:

    - ``tokens``: ntype -> int ``[U_t, L]`` token ids of the batch's unique end points of
      each type (at most ``3n`` in all with joint negatives).
    - ``src_pos``: int64 ``[n]`` rows of ``tokens[cetype[0]]`` of each positive's source;
      ``dst_pos`` ``[n]`` / ``neg_pos`` ``[n, k]`` rows of ``tokens[cetype[2]]``.
    - returns the scalar logistic loss (eq. 2) and the embeddings (ntype -> ``[U_t, D]``).
    """

    def __init__(self, lms: NodeLMs, canonical_etypes):
        super().__init__()
        self.lms = lms
        self.decoder = DistMultDecoder(canonical_etypes, lms.out_dim)

    def forward(self, tokens, src_pos, dst_pos, neg_pos, cetype):
        h = self.lms(tokens)
        h_src, h_dst = h[cetype[0]], h[cetype[2]]
        pos = self.decoder(h_src[src_pos], h_dst[dst_pos], cetype)
        neg = self.decoder.score_negatives(h_src[src_pos], h_dst[neg_pos], cetype)
        return logistic_loss(pos, neg), h


class MLPEncoder(nn.Module):
    """Graph-free stand-in for the RGCN (the LM-only cost floor): a 2-layer MLP on each output
    node's own input embedding, no message passing.

    Shapes: ``forward(blocks, h)``, ``h`` ntype -> ``[N_in, in_dim]`` -> ntype ->
    ``[N_out, hidden]`` for the output nodes of ``blocks[-1]`` (the first input rows).
    ``graph_free`` is True (the encoder seam of :mod:`lmgnn_dist.model.gnn`): evaluation
    needs no neighbourhoods, and there are no layers to run layer-wise.
    """

    #: no message passing: the only encoder that says so
    graph_free = True

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Dropout(dropout))
        self.out_dim = hidden

    def forward(self, blocks: List, h: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        last, dev = blocks[-1], self.mlp[1].weight.device
        return {nt: self.mlp(x[:last.num_dst_nodes(nt)].to(dev)) for nt, x in h.items()
                if nt in last.dsttypes and last.num_dst_nodes(nt) > 0}


class TaskModel(nn.Module):
    """Stage 2 (and the frozen-LM baseline): input embeddings -> encoder (RGCN, eq. 1, or
    :class:`MLPEncoder`) -> the task's decoder and loss (:mod:`lmgnn_dist.tasks`).

    ``forward(blocks, h, batch)`` with ``h`` ntype -> ``[N_in, D]`` returns the scalar loss of
    the batch's targets; ``encoder``/``decoder`` are used directly for evaluation.
    ``label_smoothing`` (node classification; 0: off) is the training loss's, set by the stage
    that trains the model (``stage1``/``stage3.label_smoothing``), not saved with it.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, task):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.task = task  # not a module: holds no parameters
        self.label_smoothing = 0.0

    def forward(self, blocks: List, h: Dict[str, torch.Tensor], batch) -> torch.Tensor:
        enc = self.encoder(blocks, h)
        if self.label_smoothing:  # config: node classification only
            return self.task.loss(self.decoder, enc, batch, label_smoothing=self.label_smoothing)
        return self.task.loss(self.decoder, enc, batch)


class JointModel(nn.Module):
    """Stage 3: LMs + RGCN + decoder trained jointly with back-prop on sampled nodes.

    ``forward(blocks, tokens, train_idx, infer_idx, h_infer, h_fixed, batch)``, all keyed by
    node type:

    - ``tokens``: int ``[T_t, L]`` token ids of the trainable input nodes of each LM type.
    - ``train_idx``/``infer_idx``: positions of trainable/inference nodes among that type's
      input nodes; ``h_infer`` ``[I_t, D]`` their no-grad embeddings (cache or re-encoded).
    - ``h_fixed``: ``[N_in, D]`` inputs of the other types (learnable embeddings).
    - returns ``(loss, h_train)``, ``h_train`` ntype -> ``[T_t, D]``.

    ``timer``: ``phase -> context manager`` timing the LM part (``lm_grad_forward``) and the
    GNN part (``gnn_forward``) of each forward (e.g. a trainer's ``PhaseTimer``); none: not
    timed. ``aux``: an :class:`~.aux_head.LMAuxHead` whose loss is added (None: none).
    """

    def __init__(self, lms: NodeLMs, head: TaskModel, timer=None, aux=None):
        super().__init__()
        self.lms = lms
        self.head = head
        self.aux = aux
        self.timer = timer or (lambda phase: contextlib.nullcontext())

    def forward(self, blocks, tokens, train_idx, infer_idx, h_infer, h_fixed,
                batch) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        with self.timer("lm_grad_forward"):
            h_train = self.lms(tokens)
        with self.timer("gnn_forward"):
            h = dict(h_fixed)
            for nt in h_train:
                h[nt] = mix_embeddings(h_train[nt], train_idx[nt], h_infer[nt], infer_idx[nt])
            loss = self.head(blocks, h, batch)
        if self.aux is not None:
            loss = loss + self.aux(h_train, train_idx, batch).to(loss.device)
        return loss, h_train
