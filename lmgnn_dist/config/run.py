"""The whole run config and the rules that tie its sections together."""
from __future__ import annotations

from dataclasses import field
from typing import List, Literal

from partition.task_kinds import TASK_KINDS

from ..stages import STAGES

from .base import Bool, Int, NonNegInt, PosInt, section
from .sections import DataConfig, ModelConfig, TaskConfig
from .training import LaunchConfig, Stage1Config, Stage2Config, Stage3Config


@section
class RunConfig:
    """One run of the stage-wise pipeline.

    Attributes
    ----------
    output_dir : checkpoints (``stage{1,2,3}/``), ``results.json`` and logs.
    stages : which stages to run, in order; a stage whose checkpoint exists is skipped
        (``resume``) and its successor starts from it.
    resume : ``true``: a complete stage checkpoint trained on what this config asks for (its
        recorded inputs: config sections, partitions, code; :mod:`lmgnn_dist.run.provenance`)
        is reused, one trained on other inputs runs again, as do the stages after it (the
        driver says which and why); ``strict``: such a stale checkpoint is refused instead;
        ``false``: the planned stages' checkpoints are removed and everything runs afresh.
    baseline : also train the GNN on the *pre-trained* (not fine-tuned) LM's embeddings.
    eval_batch_size : target nodes per evaluation batch (full neighbourhoods).
    encode_batch_size : sub-batch size of the no-grad full-graph encoding.
    pipeline_depth : FIFO depth of the asynchronous fetch -> encode pipeline of every no-grad
        encoding (0: synchronous).
    checkpoint_every : every stage writes a progress checkpoint (``<stage>.partial/``,
        atomically) every this many optimizer steps (stage 2 and the baseline at the end of the
        epoch in which the count is reached); a restarted job continues the stage from the last
        one (0: off, a failed stage starts again from its beginning).

    Constructing one checks every field's rule and the cross-section rules of
    :meth:`__post_init__` (raises ``pydantic.ValidationError``; :func:`load_config` turns it
    into a one-line :class:`ConfigError`).
    """

    seed: Int = 0
    output_dir: str = "work/cora/run"
    stages: List[Int] = field(default_factory=lambda: [1, 2, 3])
    baseline: Bool = True
    resume: Literal[True, False, "strict"] = True
    eval_batch_size: PosInt = 256
    encode_batch_size: PosInt = 64
    pipeline_depth: NonNegInt = 1
    checkpoint_every: NonNegInt = 0
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    stage3: Stage3Config = field(default_factory=Stage3Config)
    launch: LaunchConfig = field(default_factory=LaunchConfig)

    def __post_init__(self):
        """Rules across sections; raises ValueError with the dotted keys at fault."""
        m, t = self.model, self.task
        if m.num_layers != len(m.fanouts):
            raise ValueError(f"model.num_layers={m.num_layers} but model.fanouts has "
                             f"{len(m.fanouts)} entries")
        if m.gnn == "rgat" and m.hidden_size % m.num_heads:
            raise ValueError(f"model.hidden_size={m.hidden_size} is not divisible by "
                             f"model.num_heads={m.num_heads} (model.gnn=rgat concatenates "
                             "the heads to hidden_size)")
        numbers = [s.number for s in STAGES if s.number is not None]  # the stage table's
        if any(s not in numbers for s in self.stages) or self.stages != sorted(set(self.stages)):
            raise ValueError(f"stages must be an increasing subset of {numbers}, got "
                             f"{self.stages}")
        if TASK_KINDS[t.kind].target == "etype" and not t.target_etype:
            raise ValueError(f"task.kind={t.kind} needs task.target_etype (src__etype__dst)")
        if t.target_etype and len(t.target_etype.split("__")) != 3:
            raise ValueError(f"task.target_etype={t.target_etype!r} must look like "
                             "src__etype__dst")
        for nt, spec in m.encoders.items():
            if not spec:
                raise ValueError(f"model.encoders.{nt}: empty; use shared, embedding or a "
                                 "model path")
        if self.stage1.num_negatives > self.stage1.batch_size:
            raise ValueError("stage1.num_negatives (k) must be <= stage1.batch_size (n): each "
                             "positive draws its k negatives from the batch's n shared nodes")
        if self.stage3.pseudo_label_weight > 0 and (t.kind != "node_classification"
                                                     or self.stage3.mode == "lm_only"):
            raise ValueError("stage3.pseudo_label_weight > 0 needs task.kind="
                             "node_classification and stage3.mode=joint or glem (a GNN "
                             f"labels the nodes), got {t.kind} / {self.stage3.mode}")
        if self.stage3.mode == "glem" and (t.kind != "node_classification"
                                           or self.stage3.pseudo_label_weight == 0):
            raise ValueError("stage3.mode=glem needs task.kind=node_classification and "
                             "stage3.pseudo_label_weight > 0 (the LM and the GNN learn from "
                             f"each other's pseudo-labels), got {t.kind} / "
                             f"{self.stage3.pseudo_label_weight}")
        if self.stage3.glem_gnn_pseudo_weight is not None and self.stage3.mode != "glem":
            raise ValueError("stage3.glem_gnn_pseudo_weight weighs GLEM's GNN phase and needs "
                             f"stage3.mode=glem, got {self.stage3.mode}")
        if self.stage3.lm_aux_weight > 0 and (t.kind != "node_classification"
                                               or self.stage3.mode != "joint"):
            raise ValueError("stage3.lm_aux_weight > 0 needs task.kind=node_classification "
                             f"and stage3.mode=joint, got {t.kind} / {self.stage3.mode}")
        for key, eps in (("stage1", self.stage1.label_smoothing),
                         ("stage3", self.stage3.label_smoothing)):
            if eps > 0 and t.kind != "node_classification":
                raise ValueError(f"{key}.label_smoothing > 0 needs task.kind="
                                 f"node_classification, got {t.kind}")
        k = self.stage1.cross_fit_folds
        if k == 1 or (k and (self.stage1.objective != "task" or t.kind != "node_classification")):
            raise ValueError(f"stage1.cross_fit_folds={k}: 0 (off) or >= 2 folds, with "
                             "stage1.objective=task and task.kind=node_classification, got "
                             f"{self.stage1.objective} / {t.kind}")
        if self.stage1.head_warmup_epochs and self.stage1.objective != "task":
            raise ValueError(f"stage1.head_warmup_epochs={self.stage1.head_warmup_epochs} "
                             "warms the task head and needs stage1.objective=task, got "
                             f"{self.stage1.objective}")
        if self.launch.debug_local and self.launch.debug_local != self.data.num_parts:
            raise ValueError(f"launch.debug_local={self.launch.debug_local} machines but "
                             f"data.num_parts={self.data.num_parts}: one partition per machine")

