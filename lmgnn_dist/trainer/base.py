"""What every stage trainer shares: the process's :class:`StageEnv` (config, DistGraph, task,
node input encoders, the LM-embedding cache) and the :class:`StageTrainer` skeleton (seeding,
DDP wrap, collectives, logging, timers, the stage checkpoint).

A stage trainer is built with the env and the stage's name and start point
(:class:`~lmgnn_dist.stages.StageStart`) and runs with :meth:`StageTrainer.fit`, which
returns the stage's metrics and has written ``<output_dir>/<stage>/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from ..data.lm_cache import LMEmbeddingCache
from ..device import CPU, DevicePlan, check_precision, peak_gpu_mem_mib, resolve_device
from ..dist_init import DistContext, all_reduce
from ..model.joint import NodeLMs
from ..run.code_version import code_version
from ..stages import STAGE_ORDER, StageStart, variant_of
from ..tasks import Task, make_task
from .builders import NodeInputEncoders, sparse_rows
from .gradsync import AllReduceGradients
from .timing import PhaseTimer, peak_rss_mb


@dataclass
class StageEnv:
    """One trainer process's view of the run, shared by its stage trainers.

    Attributes
    ----------
    cfg : the :class:`~lmgnn_dist.config.RunConfig`.
    ctx : this trainer's :class:`~lmgnn_dist.dist_init.DistContext`.
    g : ``dgl.distributed.DistGraph`` of the partitioned TAG.
    meta : the partitioner's ``lmgnn_meta.json``.
    task : the task head's :class:`~lmgnn_dist.tasks.Task`.
    encoders : the node input encoders of every node type.
    device : where the LMs and the GNN run (:mod:`lmgnn_dist.device`).
    groups : device type -> process group of its gradients (``cuda``: an NCCL group).
    cache : the LM-embedding cache (created by the first :meth:`lm_cache` call: collective).
    code : the code this process runs (rank 0; :func:`~lmgnn_dist.run.code_version.
        code_version`), recorded in every stage's ``metrics.json`` as ``code``.
    """

    cfg: object
    ctx: DistContext
    g: object
    meta: dict
    task: Task
    encoders: NodeInputEncoders
    device: DevicePlan = CPU
    groups: Dict[str, object] = field(default_factory=dict)
    cache: Optional[LMEmbeddingCache] = field(default=None)
    code: Optional[dict] = field(default=None)
    _unused: Optional[bool] = field(default=None, repr=False)

    @classmethod
    def create(cls, cfg, ctx: DistContext, g, meta: dict) -> "StageEnv":
        """Resolve the task, the node input encoders and the devices (logged once).
        Collective when the LMs run on GPUs (creates their NCCL group).

        Raises ValueError (``DeviceError`` included) naming the config key when the task, the
        encoders or the device settings do not fit the graph or the machine.
        """
        plan = resolve_device(cfg.launch.device, cfg.launch.precision, ctx.local_rank,
                              cfg.launch.num_trainers)
        encoders = NodeInputEncoders.from_config(cfg.model, meta)
        check_precision(plan, encoders.embedding_ntypes)
        groups = {"cuda": dist.new_group(backend="nccl")} if plan.lm.type == "cuda" else {}
        env = cls(cfg, ctx, g, meta, make_task(cfg, g, meta), encoders, plan, groups,
                  code=code_version() if ctx.is_main else None)
        env.log(f"[trainer] devices: {plan.describe()}")
        if plan.warning:
            env.log(f"[trainer] WARNING: {plan.warning}", console=True)
        return env

    def log(self, msg: str, console: bool = False) -> None:
        """Log ``msg`` on rank 0 (``console``: a line for the user's console, see
        :mod:`lmgnn_dist.monitor`)."""
        if self.ctx.is_main:
            from ..monitor import log

            log(msg, console)

    def can_leave_unused(self) -> bool:
        """Whether a training step can leave model parameters without gradient: the graph
        has several node types or relations, or a node without in-edges (a batch of only
        such nodes gives blocks without edges, whose relation weight is then unused).
        The same on every trainer; computed once."""
        if self._unused is None:
            g = self.g
            self._unused = len(g.ntypes) > 1 or len(g.canonical_etypes) > 1
            for nt in g.ntypes if not self._unused else []:
                try:
                    deg = g.nodes[nt].data["in_degree"][torch.arange(g.num_nodes(nt))]
                except KeyError:  # not a partition of ours: assume the worst
                    deg = torch.zeros(1)
                self._unused = self._unused or bool((deg == 0).any())
        return self._unused

    def lm_cache(self, dim: int) -> LMEmbeddingCache:
        if self.cache is None:
            self.cache = LMEmbeddingCache(self.g, dim, ntypes=list(self.encoders.lm_of))
        return self.cache

    def fill_cache(self, lms: NodeLMs, step: int = 0, force: bool = False,
                   chunk_store=None, show_progress: bool = True) -> Optional[dict]:
        """Encode every LM-typed node with ``lms`` (no grad) into the cache unless it already
        holds their embeddings (``force``: always). Collective. ``show_progress``: a progress
        bar on rank 0 (off while a stage's own bar is open: nested bars garble piped output).
        Returns the encode figures or None."""
        cache = self.lm_cache(lms.out_dim)
        kw = dict(pipeline_depth=self.cfg.pipeline_depth, chunk_store=chunk_store,
                  sparse_rows=sparse_rows(self.g, self.cfg.model.sparse_attention),
                  chunk_key=f"rank{self.ctx.rank}of{self.ctx.world_size}")
        encode = cache.encode_all if force else cache.fill
        return encode(lms, self.cfg.encode_batch_size, self.ctx.is_main and show_progress,
                      step=step, **kw)

    def features(self, learnable):
        """``input nodes -> GNN inputs``: LM types from the cache, text-less types from
        ``learnable`` (traced for gradient when autograd is on)."""
        from ..data.node_inputs import gather_inputs

        return lambda ids: gather_inputs(self.cache, learnable, ids)

    def fanouts(self, graph_free: bool = False) -> List[int]:
        return [0] if graph_free else list(self.cfg.model.fanouts)


class StageTrainer:
    """The skeleton every stage trainer shares.

    Subclasses implement :meth:`fit`. On construction the trainer's RNGs are seeded for its
    stage (:meth:`seed`), so its randomness depends only on (seed, rank, stage).
    ``progress_checkpoints``: whether its loops write and resume progress checkpoints
    (:class:`~.run.StageRun`).
    """

    progress_checkpoints = True

    def __init__(self, env: StageEnv, name: str, start: StageStart):
        self.env, self.name, self.start = env, name, start
        self.cfg, self.ctx, self.g, self.task = env.cfg, env.ctx, env.g, env.task
        #: this trainer's generator for edge/negative/trainable-node choices and shuffles
        self.gen = torch.Generator()
        self.timer = PhaseTimer()
        #: the data-parallel wrapper of :meth:`ddp`
        self.data_parallel: Optional[torch.nn.Module] = None
        #: fp16 loss scaling (a pass-through for fp32/bf16: one code path)
        self.scaler = env.device.grad_scaler()
        self.seed()

    def fit(self) -> dict:
        """Train the stage, write its checkpoint, return its metrics."""
        raise NotImplementedError

    # -- the shared skeleton
    def seed(self) -> None:
        """Reseed this trainer's RNGs (``self.gen`` and torch's global one) for its stage.

        The stage's trainer-side randomness (edge/negative/trainable-node choices, dropout)
        then depends only on (seed, rank, stage), not on how many draws earlier stages made;
        a resumed stage starts like a fresh one (its progress checkpoint then restores both
        RNGs). Model initialisation draws from its own fork of the RNG
        (:func:`~lmgnn_dist.trainer.builders.build_task_model`), so it does not reset this.
        """
        self.stage_seed = (self.cfg.seed * 10 + STAGE_ORDER.index(self.name)) * 1000 \
            + self.ctx.rank
        self.gen.manual_seed(self.stage_seed)
        torch.manual_seed(self.stage_seed)

    def epoch_generator(self, epoch: int, salt: int = 0) -> torch.Generator:
        """The generator of epoch ``epoch``'s training batches (their order, sampled
        neighbours, negatives, pseudo-labelled targets), seeded from (seed, rank, stage,
        epoch, ``salt``) alone: two runs draw the same batches, and a stage resumed in the
        middle of an epoch re-creates that epoch's batches (:meth:`~.run.StageRun.batches`).
        ``salt`` tells apart loops of one stage (stage 3's joint steps and its re-fit)."""
        return torch.Generator().manual_seed((self.stage_seed * 4 + salt) * 100_003 + epoch)

    def ddp(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` wrapped for data-parallel training over the trainers; gradients are
        averaged in ``loss.backward()`` (DDP: every parameter on one device type, gloo or
        NCCL) or by :meth:`optimizer_step` (:class:`~.gradsync.AllReduceGradients`: LMs on a
        GPU and GNN on the CPU in one model).

        ``find_unused_parameters`` only where a step can leave parameters without gradient
        (:meth:`StageEnv.can_leave_unused`): DistMult vectors of relations not in the batch,
        RGCN weights of relations without edges in a block, an LM whose type is not in the
        batch. The LMs are loaded without their pooler (never used: [CLS] of the last
        layer), so a homogeneous graph needs no search (which costs an autograd traversal
        per step and made DDP warn on every trainer)."""
        types = {p.device.type for p in module.parameters()}
        unused = self.env.can_leave_unused()
        if len(types) > 1:
            self.data_parallel = AllReduceGradients(module, self.env.groups)
        elif types == {"cuda"}:
            self.data_parallel = DDP(module, device_ids=[self.env.device.lm],
                                     process_group=self.env.groups.get("cuda"),
                                     find_unused_parameters=unused)
        else:
            self.data_parallel = DDP(module, find_unused_parameters=unused)
        return self.data_parallel

    def log(self, msg: str, console: bool = False) -> None:
        self.env.log(msg, console)

    def monitor(self, total: int, unit: str = "step", initial: int = 0):
        """The stage's progress bar + TensorBoard writer (:class:`~lmgnn_dist.monitor.
        StageMonitor`)."""
        from ..monitor import StageMonitor

        return StageMonitor(self.env, self.name, total, unit, initial)

    def optimizer_step(self, loss: torch.Tensor, opt, learnable=None, h_learnable=None,
                       max_grad_norm: Optional[float] = None,
                       scheduler=None, per_group: bool = False) -> Optional[float]:
        """Back-propagate ``loss``, average the gradients over the trainers (inside backward
        with DDP, else :meth:`AllReduceGradients.sync`), clip their L2 norm to
        ``max_grad_norm`` (when given; the averaged gradients, so every trainer clips alike:
        one global norm, or each of ``opt``'s parameter groups on its own with
        ``per_group``), and step ``opt``, ``scheduler`` and the learnable embeddings' sparse
        optimizer. Under fp16 the loss is scaled for backward and the gradients unscaled
        before clipping (``self.scaler``; a step with inf/NaN gradients is skipped, as
        GradScaler does). ``h_learnable`` (ntype -> rows read from ``learnable``) ties every
        read row into the graph (``zero_term``), so DGL's sparse optimizer sees each of them.
        Returns the global gradient norm before clipping (None without clipping)."""
        if learnable is not None:
            loss = loss + learnable.zero_term(h_learnable)
        opt.zero_grad()
        self.scaler.scale(loss).backward()
        if isinstance(self.data_parallel, AllReduceGradients):
            self.data_parallel.sync()
        norm = None
        if max_grad_norm is not None:
            self.scaler.unscale_(opt)
            groups = [[p for p in group["params"] if p.grad is not None]
                      for group in opt.param_groups]
            groups = groups if per_group else [[p for g in groups for p in g]]
            norms = [float(torch.nn.utils.clip_grad_norm_(g, max_grad_norm))
                     for g in groups if g]
            norm = sum(n * n for n in norms) ** 0.5
        self.scaler.step(opt)
        self.scaler.update()
        if scheduler is not None:
            scheduler.step()
        if learnable is not None:
            learnable.step()
        return norm

    def min_over_trainers(self, n: int) -> int:
        return int(all_reduce(torch.tensor([n]), dist.ReduceOp.MIN).item())

    def finish(self, metrics: dict, lms: Optional[NodeLMs] = None, head=None,
               learnable=None, rank_files=None) -> dict:
        """Record peak memory and the code version (``code``), write the stage checkpoint
        with the final test evaluation's per-node predictions (``metrics`` loses
        ``test_predictions``: ``test_predictions.npz``; collective) and ``rank_files``
        (:func:`~.checkpoints.write_stage_checkpoint`'s), and log one line."""
        from .evaluation import describe
        from .checkpoints import write_stage_checkpoint

        rss, gpu = all_reduce(torch.tensor([peak_rss_mb(), peak_gpu_mem_mib(self.env.device)]),
                              dist.ReduceOp.MAX).tolist()
        metrics.update(peak_rss_mb_max_trainer=rss, peak_gpu_mem_mib=gpu,
                       variant=variant_of(self.name, self.cfg), code=self.env.code)
        predictions = metrics.pop("test_predictions", None)
        write_stage_checkpoint(self.env, self.name, metrics, lms, head, learnable, predictions,
                               self.start.inputs, rank_files)
        names = self.task.metric_names
        scores = (describe(names, metrics, "val") + "  " + describe(names, metrics, "test")
                  if any(k.startswith("val_") for k in metrics) else
                  f"loss {metrics['loss_first']:.4f} -> {metrics['loss_last']:.4f}"
                  if metrics.get("loss_first") is not None else "")
        self.log(f"[{self.name}] done in {metrics['seconds']:.1f}s  {scores}".rstrip(),
                 console=True)
        return metrics
