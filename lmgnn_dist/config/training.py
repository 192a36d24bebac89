"""Config sections of the run: the three stages and the launch of processes."""
from __future__ import annotations

from dataclasses import field
from typing import Dict, List, Literal, Optional

from .base import Bool, Fraction, NonNegFloat, NonNegInt, Port, PosFloat, PosInt, section

PLACEMENT_STRATEGIES = ("SPREAD", "STRICT_SPREAD", "PACK", "STRICT_PACK")


@section
class ScheduleConfig:
    """The training budget, learning-rate schedule, clipping, validation and early stopping
    shared by stages 1 and 3 (:mod:`lmgnn_dist.trainer.schedule`).

    Attributes
    ----------
    max_steps : optimizer steps per trainer when ``epochs`` is null (0: no training step).
    epochs : the budget in passes over the stage's training data (targets, or for link
        prediction this trainer's edges), replacing ``max_steps``; may be fractional.
    schedule : every parameter group's learning rate over the steps: ``linear`` (linear
        warm-up to the group's rate, then linear decay to 0), ``cosine`` (warm-up, cosine
        decay) or ``constant`` (warm-up, then constant) -- transformers' schedulers.
    warmup_ratio : fraction of the steps spent warming up (``[0, 1)``).
    max_grad_norm : clip the gradients' global L2 norm to this before each optimizer step
        (after they are averaged over the trainers; null: no clipping).
    clip_per_group : clip each optimizer parameter group (the LMs; the head or decoder) to
        ``max_grad_norm`` on its own, so the LM's large gradients do not shrink the head's
        step (one global norm couples them); false: one global norm.
    eval_every : validate every this many steps (null: once per epoch of the budget, or once
        at the end when the budget is under an epoch); the model with the best validation
        ``task.eval_metric`` is kept (stage 3, and stage 1 with ``objective: task``).
    patience : stop after this many validations in a row without improvement (null: never).
    """

    max_steps: NonNegInt = 40
    epochs: Optional[PosFloat] = None
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: Fraction = 0.1
    max_grad_norm: Optional[PosFloat] = 1.0
    clip_per_group: Bool = False
    eval_every: Optional[PosInt] = None
    patience: Optional[PosInt] = None


@section
class Stage1Config(ScheduleConfig):
    """Stage 1: the LMs fine-tuned before the GNN sees them.

    ``objective: link_prediction`` is LM-GNN's graph-aware pre-fine-tuning (eq. 2, joint
    negatives); ``objective: task`` fine-tunes the LMs on the task's training targets with a
    graph-free MLP head (GraphStorm's task-tuned LM, whose embeddings an RGCN then uses).

    Attributes
    ----------
    objective : ``link_prediction`` or ``task`` (node classification only).
    batch_size : positive edges (link prediction: n) or targets (task) per step per trainer.
    num_negatives : k negatives per positive, drawn from the batch's n shared negative nodes
        (``k <= n``).
    lm_lr, decoder_lr : learning rates of the LM and of the decoder (DistMult relation
        vectors, or the MLP head with ``objective: task``) (> 0).
    val_edges : link prediction: edges each trainer holds out of training and ranks at every
        validation point (MRR against ``val_negatives`` fixed nodes of the destination type);
        the LMs with the best MRR are kept (0: no validation, the last step's LMs).
    label_smoothing : ``objective: task``, node classification: the cross-entropy's label
        smoothing ``eps`` (targets ``(1 - eps)`` on the label + ``eps / C`` everywhere;
        SimTeG fine-tunes all-MiniLM-L6-v2 with 0.3); 0: off. The MLP head's dropout is
        ``model.dropout``.
    cross_fit_folds : ``objective: task``, node classification: 0 (off) or K >= 2 -- after
        the stage's LMs, K more are fine-tuned alike from the configured models, LM k on the
        training targets outside fold k (:func:`~lmgnn_dist.trainer.cross_fit.fold_of`), and
        encodes fold k; stage 2 then trains and evaluates on these out-of-fold rows for the
        training targets, so no training target's input embedding comes from an LM that saw
        its label (cross-fitting, as in stacked generalisation, Wolpert 1992). Costs K - 1
        times the stage's training more. Stage 3 starts from the stage's own LMs as without.
    head_warmup_epochs : ``objective: task``: 0 (off) or E >= 1 -- before the LMs train,
        the MLP head is fitted alone for E epochs on the frozen start LMs' embeddings
        (stage 2's batch size, learning rate and weight decay; the epoch with the best
        validation metric kept), so fine-tuning starts from a trained head instead of a
        random one: LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained
        Features and Underperform Out-of-Distribution": a random head's early gradients
        distort the pre-trained features). Costs one full encode and E head epochs; metrics
        ``head_warmup``. Cross-fitting's fold LMs warm their heads alike on their folds.
    (budget, schedule, clipping, validation points, early stopping: :class:`ScheduleConfig`;
    with ``objective: task`` validation is the task's metric on its val targets.)
    """

    objective: Literal["link_prediction", "task"] = "link_prediction"
    val_edges: NonNegInt = 256
    val_negatives: PosInt = 100
    batch_size: PosInt = 8
    num_negatives: PosInt = 4
    lm_lr: PosFloat = 2e-5
    decoder_lr: PosFloat = 1e-2
    weight_decay: NonNegFloat = 0.0
    label_smoothing: Fraction = 0.0
    cross_fit_folds: NonNegInt = 0
    head_warmup_epochs: NonNegInt = 0


@section
class Stage2Config:
    """GNN warm-start with the LM frozen (its embeddings computed once, no grad).

    Attributes
    ----------
    epochs : passes over the training targets (>= 1: the stage keeps the epoch with the best
        validation metric, so it needs one).
    batch_size : target nodes per mini-batch per trainer.
    lr : GNN + decoder learning rate.
    """

    epochs: PosInt = 30
    batch_size: PosInt = 64
    lr: PosFloat = 1e-3
    weight_decay: NonNegFloat = 5e-4


@section
class Stage3Config(ScheduleConfig):
    """Joint LM + GNN fine-tuning with back-prop on a sampled subset of nodes.

    Budget, schedule, clipping, validation and early stopping: :class:`ScheduleConfig`
    (``max_steps: 0`` just evaluates the stage-2 model).

    Attributes
    ----------
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
    lm_lr, gnn_lr : peak learning rates (``gnn_lr`` is the head's).
    head_weight_decay : the head's AdamW weight decay (null: ``weight_decay``, the LMs'); with
        ``gnn_lr`` set to ``stage2.lr`` and this to ``stage2.weight_decay`` the head trains in
        its stage-2 regime.
    eval_source : what validation reads: ``encode`` (every node re-encoded with the current
        LMs, which also refreshes the cache for the steps after it) or ``cache`` (the cache as
        training left it: cheap, but most rows come from older LMs).
    refit_gnn : after the joint steps, train a fresh GNN head (``stage2``'s settings,
        ``refit_epochs``) on the embeddings of the LMs as training left them, and keep those
        LMs + that head when their validation metric beats the best joint model's.
    refit_epochs : epochs of that re-fit (null: ``stage2.epochs``).
    mode : ``joint`` (LM + RGCN from stage 2), ``lm_only`` (the cost floor for comparison: LM
        fine-tuned on the targets alone with a fresh MLP head, no graph) or ``glem`` (GLEM's
        alternation, :mod:`lmgnn_dist.trainer.glem`: ``glem_rounds`` rounds of an LM phase
        on gold + the GNN's pseudo-labels (this section's budget, schedule and rates), a
        full re-encode, and a GNN fit on gold + the LM's pseudo-labels (``stage2``'s
        settings, ``refit_epochs``); node classification, ``pseudo_label_weight`` > 0).
    glem_rounds : ``mode: glem``'s rounds (each an LM phase and a GNN phase).
    glem_gnn_pseudo_weight : ``mode: glem``: the loss weight of the LM's pseudo-labels in
        the GNN phase (null: ``pseudo_label_weight``, which the LM phase always uses; 0: the
        GNN trains on the gold labels alone, so no LM label of a test node teaches it).
        GLEM's own ogbn-arxiv recipe uses 0.05 (its README: ``--gnn_pl_weight=0.05``).
    pseudo_label_weight : GLEM's pseudo-labels (node classification): the loss weight of
        target nodes outside the training and validation splits labelled by the start model
        (``glem``: by the other model of the round) (0: off; see
        :mod:`lmgnn_dist.trainer.pseudo_labels`).
    pseudo_label_ratio : pseudo-labelled targets joining each batch, per gold target.
    lm_aux_weight : weight of an auxiliary cross-entropy on a fresh linear classifier over the
        LM embedding of each target encoded with gradient (node classification, ``joint``;
        :mod:`lmgnn_dist.model.aux_head`), trained with the head's rate; 0: off.
    pseudo_label_threshold : keep pseudo-labels whose teacher probability is at least this.
    label_smoothing : node classification: the training cross-entropy's label smoothing
        (:class:`Stage1Config`; the re-fit trains without it, as stage 2 does); 0: off.
    """

    mode: Literal["joint", "lm_only", "glem"] = "joint"
    glem_rounds: PosInt = 2
    glem_gnn_pseudo_weight: Optional[NonNegFloat] = None
    batch_size: PosInt = 16
    lm_train_nodes: PosInt = 16
    lm_infer_batch_size: PosInt = 64
    inference_source: Literal["cache", "encode"] = "cache"
    trainable_policy: Literal["random", "targets", "degree"] = "random"
    deg_threshold: NonNegInt = 0
    cache_max_staleness: Optional[NonNegInt] = None
    refresh_batch_size: NonNegInt = 0
    lm_dropout: Bool = False
    lm_lr: PosFloat = 1e-5
    gnn_lr: PosFloat = 1e-4
    weight_decay: NonNegFloat = 0.0
    head_weight_decay: Optional[NonNegFloat] = None
    eval_source: Literal["encode", "cache"] = "encode"
    refit_gnn: Bool = True
    refit_epochs: Optional[PosInt] = None
    pseudo_label_weight: NonNegFloat = 0.0
    pseudo_label_ratio: PosFloat = 1.0
    pseudo_label_threshold: Fraction = 0.0
    lm_aux_weight: NonNegFloat = 0.0
    label_smoothing: Fraction = 0.0


@section
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
        :mod:`lmgnn_dist.drivers.ray_pipeline` (``null``: ``num_trainers * omp_threads``).
    device : where the LMs run: ``auto`` (a GPU when one is visible), ``cpu`` or ``cuda``
        (trainer ``i`` of a machine on GPU ``i``); see :mod:`lmgnn_dist.device`.
    precision : the LMs' autocast precision: ``fp32``, ``bf16``, ``fp16`` (GPU only) or
        ``auto`` (bf16 on a CPU with AMX / AVX512-BF16 or a GPU with bf16, else fp32; resolved
        by :func:`lmgnn_dist.device.resolve_device`; the default). Cora's quality rows at
        bf16 are within the paired interval of fp32's over 5 seeds (``benchmarks/QUALITY.md``).
    ray_placement_strategy : the placement group's strategy (``SPREAD``: one machine per Ray
        node where possible, all on one node when they fit; ``STRICT_SPREAD``: one node per
        machine or fail; ``PACK``/``STRICT_PACK``: as few nodes as possible).
    """

    debug_local: NonNegInt = 2
    ip_config: str = ""
    ssh_user: str = ""
    ssh_port: Port = 22
    ssh_opts: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    num_trainers: PosInt = 1
    num_servers: PosInt = 1
    omp_threads: PosInt = 1
    max_restarts: NonNegInt = 2
    ray_cpus_per_machine: Optional[PosFloat] = None
    ray_placement_strategy: Literal[PLACEMENT_STRATEGIES] = "SPREAD"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "auto"
