"""Builders of what a stage trains, usable without a trainer (``embed.py``, tests).

GraphStorm's vocabulary: every node type has a **node input encoder** (a shared LM, its own
LM, or learnable embeddings: :class:`NodeInputEncoders`); the **GNN encoder** (``model.gnn``:
RGCN, LM-GNN eq. 1, or RGAT; or the graph-free MLP of the LM-only mode) and the task's **decoder** form the task
head (:class:`~lmgnn_dist.model.joint.TaskModel`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

from ..device import CPU, DevicePlan
from ..model.joint import MLPEncoder, NodeLMs, TaskModel
from ..model import GNN_ENCODERS
from ..model.lm import LMEncoder
from ..data.node_inputs import LearnableEmbeddings, resolve_encoders
from ..run.stage_checkpoint import StageCheckpoint


@dataclass(frozen=True)
class NodeInputEncoders:
    """Which node input encoder each node type of the partitioned graph uses.

    Attributes
    ----------
    lm_of : ntype -> LM key (``shared`` or ``own_<ntype>``), for the LM-encoded types.
    lm_paths : LM key -> model path / alias (``model.lm`` or the type's own).
    embedding_ntypes : text-less types with learnable embeddings.
    pad_id : the partition tokenizer's pad token id (the LMs' attention mask).
    tokenizer : the model whose tokenizer made the partitions' token ids; every LM checkpoint
        is saved with it.
    """

    lm_of: Dict[str, str]
    lm_paths: Dict[str, str]
    embedding_ntypes: List[str]
    pad_id: int
    tokenizer: str

    @classmethod
    def from_config(cls, model_cfg, meta: dict) -> "NodeInputEncoders":
        """Resolve ``model.encoders`` against the partitioner's ``lmgnn_meta.json``.

        Raises
        ------
        ValueError naming the node type or config key (unknown type, LM for a text-less type,
        no LM-encoded type at all).
        """
        lm_of, paths, emb = resolve_encoders(model_cfg.encoders, model_cfg.lm, meta)
        if not lm_of:
            raise ValueError("no node type is encoded by an LM (model.encoders maps every type "
                             "to 'embedding'); LM-GNN needs at least one text type")
        return cls(lm_of, paths, emb, int(meta["pad_token_id"]), meta["options"]["model"])


def build_lms(encoders: NodeInputEncoders, model_cfg, stage_dir: Optional[Path] = None,
              device: DevicePlan = CPU, trains: bool = False) -> NodeLMs:
    """The run's LMs, each from where the stage checkpoint ``stage_dir`` says it starts
    (:meth:`~lmgnn_dist.run.stage_checkpoint.StageCheckpoint.lm_sources`: the stage's own
    ``lm*/`` folder, else stage 1's, else the configured model), or the configured models
    (``model.lm`` / ``model.encoders``) without one; placed and run as ``device`` says (with
    ``model.lm_gradient_checkpointing``), each pooling as ``model.pooling`` says (``auto``:
    resolved from that LM's own folder). ``trains``: the stage trains the LMs, which then
    carry ``model.lora``'s adapters when its rank is >= 1 (:mod:`lmgnn_dist.model.lora`).

    Raises ConfigError (``model.pooling=auto``) naming the file and key of a folder whose
    declared pooling is not supported."""
    sparse = model_cfg.sparse_attention
    sources = (StageCheckpoint(stage_dir).lm_sources(encoders.lm_paths)
               if stage_dir is not None else dict(encoders.lm_paths))
    lms = {}
    for key, path in sources.items():
        lms[key] = LMEncoder(path, encoders.pad_id, sparse=sparse if sparse.enabled else None,
                             device=device,
                             gradient_checkpointing=model_cfg.lm_gradient_checkpointing,
                             pooling=model_cfg.pooling,
                             lora=model_cfg.lora if trains else None)
    return NodeLMs(lms, encoders.lm_of)


def build_task_model(model_cfg, task, canonical_etypes, in_dim: int, seed: int,
                     graph_free: bool = False,
                     device: torch.device = torch.device("cpu")) -> TaskModel:
    """GNN encoder (``GNN_ENCODERS[model.gnn]``, RGCN or RGAT over ``canonical_etypes``, or
    the graph-free MLP) + the task's decoder on ``device`` (:attr:`DevicePlan.gnn`),
    initialised (on the CPU) from ``seed`` alone, so identically on every trainer (DDP also
    broadcasts rank 0's). Torch's global RNG is left as it was (``fork_rng``): the per-stage,
    per-rank seeding of dropout and shuffles is not reset.

    Raises KeyError naming ``model.gnn`` for an encoder not in :data:`GNN_ENCODERS` (the
    config's type already refuses one)."""
    m = model_cfg
    if not graph_free and m.gnn not in GNN_ENCODERS:
        raise KeyError(f"model.gnn={m.gnn!r}: known encoders {sorted(GNN_ENCODERS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = (MLPEncoder(in_dim, m.hidden_size, m.dropout) if graph_free else
                   GNN_ENCODERS[m.gnn].from_config(m, in_dim, canonical_etypes))
        return TaskModel(encoder, task.new_decoder(encoder.out_dim), task).to(device)


def build_learnable(g, encoders: NodeInputEncoders, dim: int, name: str,
                    lr: float) -> Optional[LearnableEmbeddings]:
    """Fresh learnable embeddings ``[num_nodes, dim]`` of the text-less types, DistEmbedding
    ``node_emb_<name>`` (collective), or None when every type has text."""
    if not encoders.embedding_ntypes:
        return None
    return LearnableEmbeddings(g, encoders.embedding_ntypes, dim, f"node_emb_{name}", lr)


def sparse_rows(g, sparse_cfg) -> Callable[[str], Optional[Callable]]:
    """``ntype -> (ids -> bool [B])``: the rows to encode with block-sparse attention (in-degree
    below ``sparse_cfg.deg_threshold``), or ``ntype -> None`` when sparse attention is off."""
    def rows(ntype: str):
        if not sparse_cfg.enabled:
            return None
        degrees = g.nodes[ntype].data["in_degree"]
        return lambda ids: degrees[ids] < sparse_cfg.deg_threshold
    return rows
