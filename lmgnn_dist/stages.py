"""The three LM-GNN stages (Ioannidis et al., 2022, "Efficient and effective training of
language and graph neural network models"), run by every trainer of a DistDGL job.

1. **Graph-aware pre-fine-tuning** (:meth:`StageRunner.stage1`): the LM alone, trained on link
   prediction over the graph's edges with DistMult and the logistic loss (eq. 2), negatives
   from the joint sampler.
2. **GNN warm-start** (:meth:`StageRunner.run_gnn_stage`): the LM frozen; its embeddings
   computed once into the :class:`~lmgnn_dist.emb_table.LMEmbeddingTable`; RGCN (eq. 1) +
   the task's decoder trained on them. The same routine on the *pre-trained* LM gives the
   frozen-LM baseline.
3. **Joint fine-tuning** (:meth:`StageRunner.stage3`): LM + RGCN + decoder, with back-prop on
   at most ``lm_train_nodes`` sampled nodes per mini-batch (targets first); all other input
   nodes are inference nodes read from the table (or re-encoded without gradient).

The task (node classification, edge classification, link prediction) is a pluggable head
(:mod:`lmgnn_dist.tasks`); node types are encoded by a shared LM, their own LM, or learnable
embeddings (:mod:`lmgnn_dist.node_inputs`).

Each stage writes a checkpoint (:mod:`lmgnn_dist.checkpoint`); a later stage starts from the
previous one's and a completed stage is not run again when ``resume`` is on.
"""
from __future__ import annotations

import copy
import itertools
import json
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from . import checkpoint as ckpt
from .config import RunConfig, to_dict
from .dist_init import DistContext
from .emb_table import CacheStats, LMEmbeddingTable
from .model.joint import JointModel, LMLinkPredictor, MLPEncoder, NodeLMs, TaskModel
from .model.lm import LMEncoder
from .model.rgcn import RGCN
from .node_inputs import LearnableEmbeddings, gather_inputs, lm_folder, resolve_encoders
from .sampling import joint_negative_sample, select_trainable_nodes_hetero
from .subbatch import encode_pipelined
from .tasks import make_task

class PhaseTimer:
    """Wall seconds per named phase: ``with timer("sampling"): ...`` or ``timer.add(name, s)``."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class StageRunner:
    """Runs the stages of one :class:`RunConfig` in a trainer process.

    Parameters
    ----------
    cfg : the run config.
    ctx : this trainer's :class:`DistContext`.
    g : ``dgl.distributed.DistGraph`` of the partitioned TAG.
    meta : the partitioner's ``lmgnn_meta.json`` (pad id, classes, text-less types, hold-out).

    Raises
    ------
    ValueError naming the config key when the task or the encoders do not fit the graph.
    """

    STAGE_ORDER = ("baseline", "stage1", "stage2", "stage3")

    def __init__(self, cfg: RunConfig, ctx: DistContext, g, meta: dict):
        self.cfg, self.ctx, self.g, self.meta = cfg, ctx, g, meta
        self.pad_id = int(meta["pad_token_id"])
        self.task = make_task(cfg, g, meta)
        self.lm_of, self.lm_paths, self.emb_ntypes = resolve_encoders(
            cfg.model.encoders, cfg.model.lm, meta)
        if not self.lm_of:
            raise ValueError("no node type is encoded by an LM (model.encoders maps every type "
                             "to 'embedding'); LM-GNN needs at least one text type")
        #: tokenizer the partitions were made with; every LM checkpoint is saved with it
        self.tokenizer = meta["options"]["model"]
        self.gen = torch.Generator()
        self.table: Optional[LMEmbeddingTable] = None
        self.table_lm: Optional[str] = None  # which LMs' embeddings the table holds

    # ------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if self.ctx.is_main:
            print(msg, flush=True)

    def all_reduce(self, t: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t, op=op)
        return t

    def min_over_trainers(self, n: int) -> int:
        return int(self.all_reduce(torch.tensor([n]), dist.ReduceOp.MIN).item())

    def seed_stage(self, name: str) -> None:
        """Reseed this trainer's RNGs (``self.gen`` and torch's global one) for stage ``name``.

        Each stage's trainer-side randomness (edge/negative/trainable-node choices, shuffling,
        dropout) then depends only on (seed, rank, stage), not on how many draws earlier stages
        made, which varies with the neighbours the (unseeded) DGL servers sample; a resumed
        stage starts like a fresh one.
        """
        seed = (self.cfg.seed * 10 + self.STAGE_ORDER.index(name)) * 1000 + self.ctx.rank
        self.gen.manual_seed(seed)
        torch.manual_seed(seed)

    def load_lms(self, stage_dir: Optional[Path]) -> NodeLMs:
        """The run's LMs, from ``stage_dir``'s ``lm*/`` folders where present (a stage
        checkpoint), else the configured models."""
        sparse = self.cfg.model.sparse_attention
        lms = {}
        for key, path in self.lm_paths.items():
            saved = stage_dir / lm_folder(key) if stage_dir is not None else None
            lms[key] = LMEncoder(str(saved) if saved is not None and saved.exists() else path,
                                 self.pad_id, sparse=sparse if sparse.enabled else None)
        return NodeLMs(lms, self.lm_of)

    def sparse_rows(self, ntype: str):
        """``ids -> bool`` (in-degree below the threshold) if sparse attention is on, else None."""
        sparse = self.cfg.model.sparse_attention
        if not sparse.enabled:
            return None
        degrees = self.g.nodes[ntype].data["in_degree"]
        return lambda ids: degrees[ids] < sparse.deg_threshold

    def encode_all(self, lms: NodeLMs, step: int = 0, chunk_store=None) -> dict:
        """Full no-grad encode of every LM-typed node into the cache (collective);
        ``chunk_store``: a folder that makes it resumable (see
        :meth:`LMEmbeddingTable.encode_all`)."""
        return self.embedding_table(lms.out_dim).encode_all(
            lms, self.cfg.encode_batch_size, self.ctx.is_main, step=step,
            pipeline_depth=self.cfg.pipeline_depth, sparse_rows=self.sparse_rows,
            chunk_store=chunk_store, chunk_key=f"rank{self.ctx.rank}of{self.ctx.world_size}")

    def embedding_table(self, dim: int) -> LMEmbeddingTable:
        if self.table is None:
            self.table = LMEmbeddingTable(self.g, dim, ntypes=list(self.lm_of))
        return self.table

    def new_head(self, in_dim: int, graph_free: bool = False) -> TaskModel:
        """RGCN (or the graph-free MLP) + the task's decoder, initialised identically on every
        trainer (DDP also broadcasts rank 0's)."""
        torch.manual_seed(self.cfg.seed)
        m = self.cfg.model
        encoder = (MLPEncoder(in_dim, m.hidden_size, m.dropout) if graph_free else
                   RGCN(in_dim, m.hidden_size, m.num_layers, self.g.canonical_etypes, m.dropout))
        return TaskModel(encoder, self.task.new_decoder(m.hidden_size), self.task)

    def new_learnable(self, name: str, dim: int) -> Optional[LearnableEmbeddings]:
        """Fresh learnable embeddings of the text-less types for stage ``name`` (collective)."""
        if not self.emb_ntypes:
            return None
        return LearnableEmbeddings(self.g, self.emb_ntypes, dim, f"node_emb_{name}",
                                   self.cfg.model.embedding_lr)

    def inputs(self, ids: Dict[str, torch.Tensor], learnable) -> Dict[str, torch.Tensor]:
        return gather_inputs(self.table, learnable, ids)

    def fanouts(self, graph_free: bool = False) -> List[int]:
        return [0] if graph_free else list(self.cfg.model.fanouts)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, head: TaskModel, learnable, split: str) -> Dict[str, object]:
        """The task's metrics of ``head`` on ``split`` over all trainers, with full
        neighbourhoods (none at all for the graph-free head) and the current table."""
        graph_free = isinstance(head.encoder, MLPEncoder)
        head.eval()
        metrics = self.task.evaluate(head, lambda ids: self.inputs(ids, learnable), split,
                                     self.fanouts(graph_free), self.cfg.eval_batch_size,
                                     full_neighbors=not graph_free)
        head.train()
        return metrics

    @staticmethod
    def prefixed(split: str, metrics: Dict[str, object]) -> Dict[str, object]:
        """``{"acc": .9}`` -> ``{"val_acc": .9}``."""
        return {f"{split}_{k}": v for k, v in metrics.items()}

    def eval_metrics(self, head: TaskModel, learnable) -> Dict[str, object]:
        return {**self.prefixed("val", self.evaluate(head, learnable, "val")),
                **self.prefixed("test", self.evaluate(head, learnable, "test"))}

    def describe(self, metrics: Dict[str, object], split: str = "val") -> str:
        return "  ".join(f"{split}_{k} {metrics[f'{split}_{k}']:.4f}"
                         for k in self.task.metric_names if f"{split}_{k}" in metrics)

    # ------------------------------------------------------------------ stage 2 / baseline
    def train_gnn(self, name: str, learnable) -> tuple:
        """Train RGCN + decoder (and learnable embeddings) on the fixed embedding table; the
        epoch with the best validation ``task.primary`` metric is kept.

        Returns ``(head, metrics)`` with the task's val/test metrics of that epoch.
        """
        s, primary = self.cfg.stage2, self.task.primary
        head = self.new_head(self.table.dim)
        opt = torch.optim.Adam(head.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        state = self.load_progress(name, {"head": head}, opt, learnable, unit="epoch") or {}
        # hetero graphs: a relation without edges in a block leaves its weights unused
        model = DDP(head, find_unused_parameters=True)
        steps = self.min_over_trainers(self.task.num_train_batches(s.batch_size))
        best, best_state, best_rows, best_epoch, epoch_losses = (
            state.get(k, d) for k, d in (("best", None), ("best_state", None),
                                         ("best_rows", None), ("best_epoch", -1),
                                         ("losses", [])))
        for epoch in range(state.get("step", 0), s.epochs):
            total = 0.0
            for batch in itertools.islice(self.task.train_batches(
                    self.fanouts(), s.batch_size, self.gen), steps):
                h = self.inputs(batch.input_nodes, learnable)
                loss = model(batch.blocks, h, batch)
                if learnable is not None:
                    loss = loss + learnable.zero_term(h)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if learnable is not None:
                    learnable.step()
                total += loss.item()
            epoch_losses.append(total / max(1, steps))
            val = self.evaluate(head, learnable, "val")
            if best is None or val[primary] > best[primary]:
                best, best_epoch = val, epoch
                best_state = copy.deepcopy(head.state_dict())
                best_rows = learnable.local_rows() if learnable is not None else None
            if epoch % 5 == 0 or epoch == s.epochs - 1:
                self.log(f"[{name}] epoch {epoch:3d}  train loss {epoch_losses[-1]:.4f}  "
                         + self.describe(self.prefixed("val", val)))
            if self.progress_due(epoch + 1, s.epochs, steps_per_unit=steps):
                self.save_progress(name, epoch + 1, {"head": head}, opt, learnable,
                                   {"best": best, "best_state": best_state, "best_rows": best_rows,
                                    "best_epoch": best_epoch, "losses": epoch_losses},
                                   unit="epoch")
        head.load_state_dict(best_state)
        if learnable is not None:
            learnable.restore(best_rows)
        metrics = {**self.prefixed("val", best),
                   **self.prefixed("test", self.evaluate(head, learnable, "test")),
                   "best_epoch": best_epoch, "epochs": s.epochs, "steps_per_epoch": steps,
                   "losses": epoch_losses}
        return head, metrics

    def run_gnn_stage(self, name: str, lm_dir: Optional[Path]) -> dict:
        """Encode all nodes with the LMs of ``lm_dir`` (frozen), then :meth:`train_gnn`."""
        self.seed_stage(name)
        t0 = time.time()
        lms = self.load_lms(lm_dir)
        enc = self.encode_all(lms)
        self.table_lm = str(lm_dir) if lm_dir else "pretrained"
        self.log(f"[{name}] encoded all nodes with the frozen LM in {enc['seconds']:.1f}s")
        learnable = self.new_learnable(name, lms.out_dim)
        head, metrics = self.train_gnn(name, learnable)
        metrics.update(lm=str(lm_dir / "lm") if lm_dir else self.cfg.model.lm,
                       encode_s=enc["seconds"], seconds=time.time() - t0)
        self.finish(name, metrics, head=head, learnable=learnable)
        return metrics

    # ------------------------------------------------------------------ stage 1
    def stage1(self) -> dict:
        """Graph-aware LM pre-fine-tuning on link prediction with joint negatives (eq. 2),
        over the relations whose both end types are LM-encoded."""
        import dgl

        self.seed_stage("stage1")
        s, t0 = self.cfg.stage1, time.time()
        lms = self.load_lms(None)
        relations = [c for c in self.g.canonical_etypes
                     if c[0] in self.lm_of and c[2] in self.lm_of]
        model = LMLinkPredictor(lms, relations)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": model.decoder.parameters(), "lr": s.decoder_lr}])
        state = self.load_progress("stage1", {"model": model}, opt, None) or {}
        # unused each step: the LMs' poolers and the other relations' DistMult vectors
        ddp = DDP(model, find_unused_parameters=True)
        pb = self.g.get_partition_book()
        local_edges = {c: dgl.distributed.edge_split(
            torch.ones(self.g.num_edges(c), dtype=torch.bool), pb, etype=c, force_even=True)
            for c in relations}
        cetypes = [c for c in local_edges if len(local_edges[c]) >= s.batch_size]
        if not cetypes:
            raise ValueError(f"stage1.batch_size={s.batch_size} exceeds every text relation's "
                             "edges")
        weights = torch.tensor([float(len(local_edges[c])) for c in cetypes])
        losses, encoded = state.get("losses", []), state.get("encoded", 0)
        model.train()
        for step in range(state.get("step", 0), s.max_steps):
            c = cetypes[int(torch.multinomial(weights, 1, generator=self.gen))]
            edges = local_edges[c]
            eids = edges[torch.randint(0, len(edges), (s.batch_size,), generator=self.gen)]
            src, dst = self.g.find_edges(eids, etype=c)
            neg = joint_negative_sample(s.batch_size, s.num_negatives, self.g.num_nodes(c[2]),
                                        generator=self.gen)
            tokens, (src_pos, dst_pos, neg_nodes_pos) = self._gather_tokens(
                [(c[0], src), (c[2], dst), (c[2], neg.neg_nodes)])
            loss, _ = ddp(tokens, src_pos, dst_pos, neg_nodes_pos[neg.pair_index], c)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            n_enc = sum(len(t) for t in tokens.values())
            encoded += n_enc
            if step % 10 == 0 or step == s.max_steps - 1:
                self.log(f"[stage1] step {step:4d}/{s.max_steps}  loss {loss.item():.4f}  "
                         f"({n_enc} LM encodings for {s.batch_size} positives x "
                         f"{s.num_negatives} negatives)")
            if self.progress_due(step + 1, s.max_steps):
                self.save_progress("stage1", step + 1, {"model": model}, opt, None,
                                   {"losses": losses, "encoded": encoded})
        k = max(1, len(losses) // 5)
        metrics = {"loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
                   "losses": losses, "steps": s.max_steps,
                   "lm_encodings_per_step": encoded / max(1, s.max_steps),
                   "seconds": time.time() - t0}
        self.finish("stage1", metrics, lms=lms)
        return metrics

    def _gather_tokens(self, groups):
        """Token rows of the unique nodes of ``groups`` (a list of ``(ntype, ids)``).

        Returns ``tokens`` (ntype -> ``[U_t, L]``) and, per group, int64 positions into its
        type's rows. Nodes appearing in several groups (or twice in one) are encoded once.
        """
        by_type: Dict[str, list] = {}
        for nt, ids in groups:
            by_type.setdefault(nt, []).append(ids)
        tokens, inverse = {}, {}
        for nt, parts in by_type.items():
            uniq, inv = torch.unique(torch.cat(parts), return_inverse=True)
            tokens[nt] = self.g.nodes[nt].data["input_ids"][uniq]
            inverse[nt] = list(torch.split(inv, [len(p) for p in parts]))
        return tokens, [inverse[nt].pop(0) for nt, _ in groups]

    # ------------------------------------------------------------------ stage 3
    def stage3(self, lm_dir: Optional[Path], head_state: Optional[dict],
               learnable_dir: Optional[Path]) -> dict:
        """Joint LM + GNN fine-tuning with back-prop on sampled nodes, then a full re-encode.

        Starts from the stage-1 LMs (``lm_dir``) and the stage-2 RGCN + decoder
        (``head_state``) and learnable embeddings (``learnable_dir``); the embedding cache must
        hold the stage-1 LMs' embeddings (written at step 0). Step ``t`` (1-based) writes its
        encodings at ``t``.
        """
        self.seed_stage("stage3")
        s, t0 = self.cfg.stage3, time.time()
        graph_free = s.mode == "lm_only"
        lms = self.load_lms(lm_dir)
        table = self.embedding_table(lms.out_dim)
        head = self.new_head(lms.out_dim, graph_free)
        if head_state is not None and not graph_free:
            head.load_state_dict(head_state)
        learnable = self.new_learnable("stage3", lms.out_dim)
        if learnable is not None and learnable_dir is not None and not graph_free:
            learnable.load(learnable_dir, self.ctx.is_main)
        model = JointModel(lms, head)
        opt = torch.optim.AdamW([
            {"params": lms.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": head.parameters(), "lr": s.gnn_lr, "weight_decay": s.weight_decay}])
        state = self.load_progress("stage3", {"lms": lms, "head": head}, opt, learnable) or {}
        ddp = DDP(model, find_unused_parameters=True)  # poolers; relations without edges
        self.timer = PhaseTimer()
        self.timer.seconds.update(state.get("time_split_s", {}))
        self.counts = state.get("counts", {"with_grad": 0, "no_grad": 0, "from_cache": 0,
                                           "refresh": 0})
        self.targets_seen = state.get("targets_seen", 0)
        table.stats = state.get("cache", CacheStats())
        losses = state.get("losses", [])
        if state:  # a fresh job: refill the cache with the resumed LMs' embeddings
            self.encode_all(lms, step=state["step"])
        batches = self._endless_batches(s.batch_size, self.fanouts(graph_free))
        model.train()
        lms.set_dropout(s.lm_dropout)  # off: eval mode, gradients still flow (Stage3Config)
        for step in range(state.get("step", 0) + 1, s.max_steps + 1):
            with self.timer("sampling"):
                batch = next(batches)
            loss, n_in, n_train = self._joint_step(ddp, model, opt, table, learnable, batch, step)
            losses.append(loss)
            if step % 10 == 1 or step == s.max_steps:
                self.log(f"[stage3] step {step:4d}/{s.max_steps}  loss {loss:.4f}  "
                         f"(LM input nodes {n_in}: {n_train} with grad, {n_in - n_train} "
                         "inference)")
            if self.progress_due(step, s.max_steps):
                self.save_progress("stage3", step, {"lms": lms, "head": head}, opt, learnable,
                                   {"losses": losses, "counts": self.counts,
                                    "targets_seen": self.targets_seen, "cache": table.stats,
                                    "time_split_s": dict(self.timer.seconds)})
        train_s = time.time() - t0
        stats = self._stage3_stats(table, train_s)
        enc = self.encode_all(lms, step=s.max_steps)
        self.table_lm = "stage3"
        self.log(f"[stage3] re-encoded all nodes with the fine-tuned LM in {enc['seconds']:.1f}s")
        k = max(1, len(losses) // 5)  # max_steps=0 just evaluates the stage-2 model
        metrics = {**self.eval_metrics(head, learnable),
                   "loss_first": sum(losses[:k]) / k if losses else None,
                   "loss_last": sum(losses[-k:]) / k if losses else None,
                   "losses": losses, "steps": s.max_steps, **stats,
                   "train_s": train_s, "encode_s": enc["seconds"], "seconds": time.time() - t0}
        self.finish("stage3", metrics, lms=lms, head=head, learnable=learnable)
        return metrics

    def _joint_step(self, ddp, model, opt, table, learnable, batch, step: int):
        """One stage-3 optimizer step; returns ``(loss, #LM input nodes, #with-grad nodes)``."""
        s, timer, inp = self.cfg.stage3, self.timer, batch.input_nodes
        lm_types = [nt for nt in self.lm_of if nt in inp]
        with timer("communication"):
            degrees = ({nt: self.g.nodes[nt].data["in_degree"][inp[nt]] for nt in lm_types}
                       if s.trainable_policy == "degree" else None)
            h_fixed = learnable(inp) if learnable is not None else {}
        chosen = select_trainable_nodes_hetero(
            {nt: len(inp[nt]) for nt in lm_types},
            {nt: len(batch.seeds[nt]) for nt in lm_types if nt in batch.seeds},
            s.lm_train_nodes, generator=self.gen, policy=s.trainable_policy, degrees=degrees,
            deg_threshold=s.deg_threshold)
        train_idx = {nt: chosen[nt][0] for nt in lm_types}
        infer_idx = {nt: chosen[nt][1] for nt in lm_types}
        h_infer = {nt: self._inference_embeddings(model.lms, table, nt, inp[nt][infer_idx[nt]],
                                                  step) for nt in lm_types}
        with timer("communication"):
            tokens = {nt: self.g.nodes[nt].data["input_ids"][inp[nt][train_idx[nt]]]
                      for nt in lm_types}
        model.timings.clear()
        loss, h_train = ddp(batch.blocks, tokens, train_idx, infer_idx, h_infer, h_fixed, batch)
        self.timer.add("lm_grad_forward", model.timings["lm"])
        self.timer.add("gnn_forward", model.timings["head"])
        with timer("backward_optimizer"):
            if learnable is not None:
                loss = loss + learnable.zero_term(h_fixed)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if learnable is not None:
                learnable.step()
        with timer("communication"):
            for nt in lm_types:
                table.write(nt, inp[nt][train_idx[nt]], h_train[nt], step)
        n_train = sum(len(i) for i in train_idx.values())
        self.counts["with_grad"] += n_train
        self.targets_seen += self.task.targets_in(batch)
        if s.refresh_batch_size > 0:
            self._refresh(model.lms, table, step)
        return loss.item(), sum(len(inp[nt]) for nt in lm_types), n_train

    def _inference_embeddings(self, lms: NodeLMs, table: LMEmbeddingTable, nt: str,
                              ids: torch.Tensor, step: int) -> torch.Tensor:
        """No-grad embeddings of inference nodes: cache hits, misses re-encoded (and cached)."""
        s = self.cfg.stage3
        if s.inference_source == "encode":
            emb = self._encode_no_grad(lms, nt, ids)
            self.counts["no_grad"] += len(ids)
            return emb
        with self.timer("communication"):
            emb, hit = table.lookup(nt, ids, step, s.cache_max_staleness)
        miss = ids[~hit]
        self.counts["from_cache"] += int(hit.sum())
        if len(miss):
            fresh = self._encode_no_grad(lms, nt, miss)
            emb[~hit] = fresh
            self.counts["no_grad"] += len(miss)
            with self.timer("communication"):
                table.write(nt, miss, fresh, step)
        return emb

    def _encode_no_grad(self, lms: NodeLMs, nt: str, ids: torch.Tensor) -> torch.Tensor:
        """Nodes ``ids`` of type ``nt`` encoded without gradient (async pipeline, sparse rows)."""
        with self.timer("lm_no_grad"):
            return encode_pipelined(lms.encoder(nt), self.g.nodes[nt].data["input_ids"].__getitem__,
                                    ids, self.cfg.stage3.lm_infer_batch_size,
                                    self.cfg.pipeline_depth, fetch_sparse=self.sparse_rows(nt))

    def _refresh(self, lms: NodeLMs, table: LMEmbeddingTable, step: int) -> None:
        """LEADING's second pipeline: re-encode random LM-typed nodes (uniform over all of
        them) without gradient into the cache."""
        sizes = torch.tensor([self.g.num_nodes(nt) for nt in self.lm_of])
        n = int(sizes.sum())
        picks = torch.randint(0, n, (min(self.cfg.stage3.refresh_batch_size, n),),
                              generator=self.gen).unique()
        offsets = torch.cumsum(sizes, 0) - sizes
        owner = torch.bucketize(picks, torch.cumsum(sizes, 0), right=True)
        for i, nt in enumerate(self.lm_of):
            ids = picks[owner == i] - offsets[i]
            if len(ids):
                emb = self._encode_no_grad(lms, nt, ids)
                with self.timer("communication"):
                    table.write(nt, ids, emb, step)
                self.counts["refresh"] += len(ids)

    def _stage3_stats(self, table: LMEmbeddingTable, train_s: float) -> dict:
        """Instrumentation summed over trainers: LM encodings (total and per LM-encoded node,
        per epoch of the training targets), cache counters, time split (seconds, max over
        trainers) and mean step time. Peak RSS is added by :meth:`finish`."""
        s = self.cfg.stage3
        keys = list(self.counts)
        counts = dict(zip(keys, (int(v) for v in self.all_reduce(
            torch.tensor([self.counts[k] for k in keys])).tolist())))
        c = table.stats
        cache = dict(zip(["hits", "misses", "stale_misses", "rows_written"], (int(v) for v in
                     self.all_reduce(torch.tensor([c.hits, c.misses, c.stale_misses,
                                                   c.rows_written])).tolist())))
        looked_up = cache["hits"] + cache["misses"] + cache["stale_misses"]
        cache["hit_rate"] = cache["hits"] / looked_up if looked_up else None
        phases = sorted(self.timer.seconds)
        split = dict(zip(phases, self.all_reduce(torch.tensor(
            [self.timer.seconds[p] for p in phases]), dist.ReduceOp.MAX).tolist()))
        n_train, seen = self.all_reduce(torch.tensor(
            [self.task.num_train_targets(), self.targets_seen])).tolist()
        epochs = seen / max(1, n_train)  # passes over the training targets, partial batches counted
        n_nodes = sum(self.g.num_nodes(nt) for nt in self.lm_of)
        per_node_epoch = {k: v / n_nodes / epochs for k, v in counts.items()} if epochs else {}
        return {"lm_encodings": counts, "epochs": epochs,
                "lm_encodings_per_node_per_epoch": per_node_epoch, "cache": cache,
                "time_split_s": split, "train_step_s": train_s / max(1, s.max_steps)}

    def _endless_batches(self, batch_size, fanouts):
        while True:
            yield from self.task.train_batches(fanouts, batch_size, self.gen)

    # ------------------------------------------------------------------ checkpoints
    def finish(self, name: str, metrics: dict, lms: Optional[NodeLMs] = None,
               head: Optional[TaskModel] = None,
               learnable: Optional[LearnableEmbeddings] = None) -> None:
        """Record peak memory and write the stage checkpoint (collective; rank 0 writes the
        folder atomically, each trainer contributes its share of learnable embeddings)."""
        rss = self.all_reduce(torch.tensor([peak_rss_mb()]), dist.ReduceOp.MAX)
        metrics["peak_rss_mb_max_trainer"] = float(rss.item())
        staging = self._stage_rank_files(name, learnable, None)
        if self.ctx.is_main:
            def write_files(tmp):
                if lms is not None:
                    for key, lm in lms.lms.items():
                        lm.save_pretrained(str(tmp / lm_folder(key)),
                                           tokenizer_source=self.tokenizer)
                if head is not None:
                    torch.save(head.state_dict(), tmp / "gnn.pt")
                _move_contents(staging, tmp)
            ckpt.write_stage(self.cfg.output_dir, name, metrics, write_files)
            shutil.rmtree(ckpt.stage_dir(self.cfg.output_dir, f"{name}.partial"),
                          ignore_errors=True)  # the stage is complete: progress is obsolete
            print(f"[{name}] done in {metrics['seconds']:.1f}s  "
                  + self.describe(metrics, "val") + "  " + self.describe(metrics, "test"),
                  flush=True)
        dist.barrier()

    def _stage_rank_files(self, name: str, learnable: Optional[LearnableEmbeddings],
                          rank_state: Optional[dict]) -> Path:
        """Collective: every trainer writes its share of a checkpoint -- its learnable-embedding
        rows (``node_emb/``) and ``rank_state`` (``ranks/rank-<r>.pt``) -- into a fresh
        staging folder, which rank 0 then moves into the checkpoint's temp folder."""
        staging = Path(self.cfg.output_dir) / f".{name}.staging"
        if self.ctx.is_main and staging.exists():
            shutil.rmtree(staging)
        dist.barrier()
        if learnable is not None:
            learnable.save(staging / "node_emb", self.ctx.rank)
        if rank_state is not None:
            (staging / "ranks").mkdir(parents=True, exist_ok=True)
            torch.save(rank_state, staging / "ranks" / f"rank-{self.ctx.rank}.pt")
        dist.barrier()
        return staging

    # ------------------------------------------------------------------ progress checkpoints
    def progress_due(self, done: int, total: int, steps_per_unit: int = 1) -> bool:
        """Whether to write a progress checkpoint after ``done`` of ``total`` steps (or epochs
        of ``steps_per_unit`` steps): the unit just finished crossed a multiple of
        ``checkpoint_every`` optimizer steps, and the stage is not over."""
        every = self.cfg.checkpoint_every
        return (every > 0 and done < total
                and done * steps_per_unit // every > (done - 1) * steps_per_unit // every)

    def save_progress(self, name: str, done_steps: int, modules: Dict[str, torch.nn.Module],
                      opt, learnable: Optional[LearnableEmbeddings], rank_state: dict,
                      unit: str = "step") -> None:
        """Write ``<output_dir>/<name>.partial/`` atomically (collective): the modules' and
        optimizer's states after ``done_steps`` steps (or epochs: ``unit``; rank 0, DDP keeps
        them equal), and per trainer its RNG states, ``rank_state`` and learnable rows."""
        mine = dict(rank_state, rng=self.gen.get_state(), torch_rng=torch.get_rng_state())
        staging = self._stage_rank_files(f"{name}.partial", learnable, mine)
        if self.ctx.is_main:
            def write_files(tmp):
                torch.save({"step": done_steps, "world_size": self.ctx.world_size,
                            "modules": {k: m.state_dict() for k, m in modules.items()},
                            "optimizer": opt.state_dict()}, tmp / "progress.pt")
                _move_contents(staging, tmp)
            ckpt.write_stage(self.cfg.output_dir, f"{name}.partial", {"step": done_steps},
                             write_files)
        dist.barrier()
        self.log(f"[{name}] progress checkpoint after {unit} {done_steps}")

    def load_progress(self, name: str, modules: Dict[str, torch.nn.Module], opt,
                      learnable: Optional[LearnableEmbeddings],
                      unit: str = "step") -> Optional[dict]:
        """Restore the last :meth:`save_progress` of stage ``name`` (when ``resume``): module
        and optimizer states, learnable embeddings, and this trainer's RNGs and ``rank_state``
        (those only with the same number of trainers). Returns the rank state with ``step``
        (steps done), or None if there is no progress checkpoint."""
        out = self.cfg.output_dir
        if not (self.cfg.resume and ckpt.is_complete(out, f"{name}.partial")):
            return None
        folder = ckpt.stage_dir(out, f"{name}.partial")
        saved = torch.load(folder / "progress.pt")
        for key, module in modules.items():
            module.load_state_dict(saved["modules"][key])
        opt.load_state_dict(saved["optimizer"])
        if learnable is not None:
            learnable.load(folder / "node_emb", self.ctx.is_main)
        mine = folder / "ranks" / f"rank-{self.ctx.rank}.pt"
        state = (torch.load(mine) if saved["world_size"] == self.ctx.world_size and mine.exists()
                 else {})
        if "rng" in state:
            self.gen.set_state(state.pop("rng"))
            torch.set_rng_state(state.pop("torch_rng"))
        self.log(f"[{name}] resuming after {unit} {saved['step']} from its progress checkpoint")
        return dict(state, step=saved["step"])

    # ------------------------------------------------------------------ the pipeline
    def run(self) -> Dict[str, dict]:
        """Run the configured stages in order, skipping completed ones when ``resume``."""
        cfg, out = self.cfg, self.cfg.output_dir
        results: Dict[str, dict] = {}

        def done(name):
            return cfg.resume and ckpt.is_complete(out, name)

        if cfg.baseline:
            results["baseline"] = (ckpt.load_metrics(out, "baseline") if done("baseline")
                                   else self.run_gnn_stage("baseline", None))
        if 1 in cfg.stages:
            results["stage1"] = ckpt.load_metrics(out, "stage1") if done("stage1") else self.stage1()
        stage1_dir = ckpt.stage_dir(out, "stage1") if ckpt.is_complete(out, "stage1") else None
        if 2 in cfg.stages:
            if done("stage2"):
                results["stage2"] = ckpt.load_metrics(out, "stage2")
            else:
                results["stage2"] = self.run_gnn_stage("stage2", stage1_dir)
        if 3 in cfg.stages:
            if done("stage3"):
                results["stage3"] = ckpt.load_metrics(out, "stage3")
            else:
                if not ckpt.is_complete(out, "stage2"):
                    raise RuntimeError("stage 3 needs the stage-2 checkpoint; run stage 2 first")
                stage2_dir = ckpt.stage_dir(out, "stage2")
                head_state = torch.load(stage2_dir / "gnn.pt")
                learnable_dir = stage2_dir / "node_emb"
                lm_id = str(stage1_dir) if stage1_dir else "pretrained"
                resuming = cfg.resume and ckpt.is_complete(out, "stage3.partial")
                if self.table_lm != lm_id and not resuming:  # a resumed stage 3 re-encodes
                    # the table must hold the embeddings of the LMs that stage 3 starts from
                    self.encode_all(self.load_lms(stage1_dir))
                    self.table_lm = lm_id
                results["stage3"] = self.stage3(
                    stage1_dir, head_state, learnable_dir if learnable_dir.exists() else None)
        if self.ctx.is_main:
            summary = {"config": to_dict(cfg), "task": self.task.kind,
                       "primary": self.task.primary,
                       "metric_names": list(self.task.metric_names), "stages": results}
            ckpt.write_json_atomic(f"{out}/results.json", summary)
        return results


def _move_contents(src: Path, dst: Path) -> None:
    """Move everything in ``src`` into ``dst`` and remove ``src`` (if it exists)."""
    if src.exists():
        for item in src.iterdir():
            shutil.move(str(item), str(dst / item.name))
        shutil.rmtree(src)


def dumps_short(results: Dict[str, dict]) -> str:
    """Results without per-step loss lists (for logs)."""
    return json.dumps({k: {m: v for m, v in r.items() if m != "losses"} for k, r in results.items()})
