"""The three LM-GNN stages (Ioannidis et al., 2022, "Efficient and effective training of
language and graph neural network models"), run by every trainer of a DistDGL job.

1. **Graph-aware pre-fine-tuning** (:meth:`StageRunner.stage1`): the LM alone, trained on link
   prediction over the graph's edges with DistMult and the logistic loss (eq. 2), negatives
   from the joint sampler.
2. **GNN warm-start** (:meth:`StageRunner.stage2`): the LM frozen; its embeddings computed
   once into the :class:`~lmgnn_dist.emb_table.LMEmbeddingTable`; RGCN (eq. 1) + classifier
   trained on them. The same routine on the *pre-trained* LM gives the frozen-LM baseline.
3. **Joint fine-tuning** (:meth:`StageRunner.stage3`): LM + RGCN + classifier, with back-prop on
   at most ``lm_train_nodes`` sampled nodes per mini-batch (targets first); all other input
   nodes are inference nodes read from the table (or re-encoded without gradient).

Each stage writes a checkpoint (:mod:`lmgnn_dist.checkpoint`); a later stage starts from the
previous one's and a completed stage is not run again when ``resume`` is on.
"""
from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager
from typing import Dict, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from . import checkpoint as ckpt
from .config import RunConfig, to_dict
from .dataloading import node_batches, num_batches
from .dist_init import DistContext
from .emb_table import CacheStats, LMEmbeddingTable
from .model.joint import (GNNNodeClassifier, JointNodeClassifier, LMLinkPredictor,
                          MLPNodeClassifier)
from .model.lm import LMEncoder
from .sampling import joint_negative_sample, select_trainable_nodes
from .subbatch import encode_pipelined

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
    meta : the partitioner's ``lmgnn_meta.json`` (pad id, classes).
    """

    def __init__(self, cfg: RunConfig, ctx: DistContext, g, meta: dict):
        self.cfg, self.ctx, self.g, self.meta = cfg, ctx, g, meta
        self.pad_id = int(meta["pad_token_id"])
        self.target = cfg.task.target_ntype
        if self.target not in g.ntypes:
            raise ValueError(f"task.target_ntype={self.target!r} is not a node type of the "
                             f"graph: {g.ntypes}")
        classes = meta["ntypes"][self.target]["classes"]
        if not classes:
            raise ValueError(f"node type {self.target!r} has no labels for node classification")
        self.num_classes = len(classes)
        self.gen = torch.Generator()
        self.table: Optional[LMEmbeddingTable] = None
        self.table_lm: Optional[str] = None  # which LM's embeddings the table holds
        self._split_cache: Dict[str, torch.Tensor] = {}

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

    def split_nodes(self, split: str) -> torch.Tensor:
        """This trainer's share of the target type's ``split`` nodes (DGL ``node_split``)."""
        import dgl

        if split not in self._split_cache:
            mask = self.g.nodes[self.target].data[f"{split}_mask"]
            self._split_cache[split] = dgl.distributed.node_split(
                mask, self.g.get_partition_book(), ntype=self.target, force_even=True)
        return self._split_cache[split]

    STAGE_ORDER = ("baseline", "stage1", "stage2", "stage3")

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

    def load_lm(self, path: Optional[str]) -> LMEncoder:
        sparse = self.cfg.model.sparse_attention
        return LMEncoder(path or self.cfg.model.lm, self.pad_id,
                         sparse=sparse if sparse.enabled else None)

    def sparse_rows(self, ntype: str):
        """``ids -> bool`` (in-degree below the threshold) if sparse attention is on, else None."""
        sparse = self.cfg.model.sparse_attention
        if not sparse.enabled:
            return None
        degrees = self.g.nodes[ntype].data["in_degree"]
        return lambda ids: degrees[ids] < sparse.deg_threshold

    def encode_all(self, lm: LMEncoder, step: int = 0, chunk_store=None) -> dict:
        """Full no-grad encode of every node into the cache (collective); ``chunk_store``: a
        folder that makes it resumable (see :meth:`LMEmbeddingTable.encode_all`)."""
        return self.embedding_table(lm.out_dim).encode_all(
            lm, self.cfg.encode_batch_size, self.ctx.is_main, step=step,
            pipeline_depth=self.cfg.pipeline_depth, sparse_rows=self.sparse_rows,
            chunk_store=chunk_store, chunk_key=f"rank{self.ctx.rank}of{self.ctx.world_size}")

    def embedding_table(self, dim: int) -> LMEmbeddingTable:
        if self.table is None:
            self.table = LMEmbeddingTable(self.g, dim)
        return self.table

    def new_head(self, in_dim: int) -> GNNNodeClassifier:
        torch.manual_seed(self.cfg.seed)  # same init everywhere (DDP also broadcasts rank 0's)
        m = self.cfg.model
        return GNNNodeClassifier(in_dim, m.hidden_size, m.num_layers, self.g.canonical_etypes,
                                 self.num_classes, self.target, m.dropout)

    def labels(self, seeds: torch.Tensor) -> torch.Tensor:
        return self.g.nodes[self.target].data["label"][seeds]

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, head: torch.nn.Module, split: str) -> float:
        """Accuracy of ``head`` on the target type's ``split`` nodes, over all trainers.

        Uses full neighbourhoods (no sampling; none at all for an MLP head) and the current
        embedding table.
        """
        head.eval()
        correct = torch.zeros(2)
        ids = self.split_nodes(split)
        graph_free = isinstance(head, MLPNodeClassifier)
        for inp, seeds, blocks in node_batches(self.g, {self.target: ids},
                                               [0] if graph_free else self.cfg.model.fanouts,
                                               self.cfg.eval_batch_size, shuffle=False,
                                               full_neighbors=not graph_free):
            pred = head(blocks, self.table.read(inp)).argmax(1)
            correct += torch.tensor([(pred == self.labels(seeds[self.target])).sum().item(),
                                     len(pred)])
        head.train()
        total = self.all_reduce(correct)
        return float(total[0] / total[1]) if total[1] else float("nan")

    # ------------------------------------------------------------------ stage 2 / baseline
    def train_gnn(self, name: str) -> tuple:
        """Train RGCN + classifier on the (fixed) embedding table; best-val model kept.

        Returns ``(head, metrics)`` with val/test accuracy of the best-validation epoch.
        """
        s = self.cfg.stage2
        head = self.new_head(self.table.dim)
        model = DDP(head)
        opt = torch.optim.Adam(head.parameters(), lr=s.lr, weight_decay=s.weight_decay)
        train_ids = self.split_nodes("train")
        steps = self.min_over_trainers(num_batches(len(train_ids), s.batch_size))
        best_val, best_state, best_epoch, epoch_losses = -1.0, None, -1, []
        for epoch in range(s.epochs):
            total = 0.0
            for step, (inp, seeds, blocks) in enumerate(node_batches(
                    self.g, {self.target: train_ids}, self.cfg.model.fanouts, s.batch_size,
                    shuffle=True)):
                if step >= steps:
                    break
                logits = model(blocks, self.table.read(inp))
                loss = F.cross_entropy(logits, self.labels(seeds[self.target]))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            epoch_losses.append(total / max(1, steps))
            val = self.evaluate(head, "val")
            if val > best_val:
                best_val, best_epoch = val, epoch
                best_state = copy.deepcopy(head.state_dict())
            if epoch % 5 == 0 or epoch == s.epochs - 1:
                self.log(f"[{name}] epoch {epoch:3d}  train loss {epoch_losses[-1]:.4f}  "
                         f"val_acc {val:.4f}")
        head.load_state_dict(best_state)
        metrics = {"val_acc": best_val, "test_acc": self.evaluate(head, "test"),
                   "best_epoch": best_epoch, "epochs": s.epochs, "steps_per_epoch": steps,
                   "losses": epoch_losses}
        return head, metrics

    def run_gnn_stage(self, name: str, lm_path: Optional[str]) -> dict:
        """Encode all nodes with the LM at ``lm_path`` (frozen), then :meth:`train_gnn`."""
        self.seed_stage(name)
        t0 = time.time()
        lm = self.load_lm(lm_path)
        enc = self.encode_all(lm)
        self.table_lm = lm_path or self.cfg.model.lm
        self.log(f"[{name}] encoded all nodes with the frozen LM in {enc['seconds']:.1f}s")
        head, metrics = self.train_gnn(name)
        metrics.update(lm=lm_path or self.cfg.model.lm, encode_s=enc["seconds"],
                       seconds=time.time() - t0)
        self.finish(name, metrics, head=head)
        return metrics

    # ------------------------------------------------------------------ stage 1
    def stage1(self) -> dict:
        """Graph-aware LM pre-fine-tuning on link prediction with joint negatives (eq. 2)."""
        import dgl

        self.seed_stage("stage1")
        s, t0 = self.cfg.stage1, time.time()
        lm = self.load_lm(None)
        model = LMLinkPredictor(lm, self.g.canonical_etypes)
        # unused each step: the LM's pooler and the other relations' DistMult vectors
        ddp = DDP(model, find_unused_parameters=True)
        opt = torch.optim.AdamW([
            {"params": lm.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": model.decoder.parameters(), "lr": s.decoder_lr}])
        pb = self.g.get_partition_book()
        local_edges = {c: dgl.distributed.edge_split(
            torch.ones(self.g.num_edges(c), dtype=torch.bool), pb, etype=c, force_even=True)
            for c in self.g.canonical_etypes}
        cetypes = [c for c in local_edges if len(local_edges[c]) >= s.batch_size]
        if not cetypes:
            raise ValueError(f"stage1.batch_size={s.batch_size} exceeds every relation's edges")
        weights = torch.tensor([float(len(local_edges[c])) for c in cetypes])
        losses, encoded = [], 0
        lm.train()
        for step in range(s.max_steps):
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
            encoded += len(tokens)
            if step % 10 == 0 or step == s.max_steps - 1:
                self.log(f"[stage1] step {step:4d}/{s.max_steps}  loss {loss.item():.4f}  "
                         f"({len(tokens)} LM encodings for {s.batch_size} positives x "
                         f"{s.num_negatives} negatives)")
        k = max(1, len(losses) // 5)
        metrics = {"loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k,
                   "losses": losses, "steps": s.max_steps,
                   "lm_encodings_per_step": encoded / max(1, s.max_steps),
                   "seconds": time.time() - t0}
        self.finish("stage1", metrics, lm=lm)
        return metrics

    def _gather_tokens(self, groups):
        """Token rows of the unique ``(ntype, ids)`` nodes of ``groups``.

        Returns ``tokens`` ``[U, L]`` and, per group, int64 positions into it. Nodes appearing
        in several groups (or twice in one) are encoded once.
        """
        by_type: Dict[str, list] = {}
        for nt, ids in groups:
            by_type.setdefault(nt, []).append(ids)
        tokens, offset, pos_of = [], 0, {}
        for nt, parts in by_type.items():
            uniq, inv = torch.unique(torch.cat(parts), return_inverse=True)
            tokens.append(self.g.nodes[nt].data["input_ids"][uniq])
            pos_of[nt] = (offset, inv, [len(p) for p in parts])
            offset += len(uniq)
        positions, seen = [], {nt: 0 for nt in by_type}
        for nt, ids in groups:
            base, inv, sizes = pos_of[nt]
            start = sum(sizes[:seen[nt]])
            positions.append(base + inv[start:start + len(ids)])
            seen[nt] += 1
        return torch.cat(tokens), positions

    # ------------------------------------------------------------------ stage 3
    def stage3(self, lm_path: Optional[str], head_state: Optional[dict]) -> dict:
        """Joint LM + GNN fine-tuning with back-prop on sampled nodes, then a full re-encode.

        Starts from the stage-1 LM (``lm_path``) and the stage-2 RGCN + classifier
        (``head_state``); the embedding cache must hold the stage-1 LM's embeddings (written at
        step 0). Step ``t`` (1-based) writes its encodings at ``t``.
        """
        self.seed_stage("stage3")
        s, t0 = self.cfg.stage3, time.time()
        lm = self.load_lm(lm_path)
        table = self.embedding_table(lm.out_dim)
        if s.mode == "lm_only":
            torch.manual_seed(self.cfg.seed)
            head = MLPNodeClassifier(lm.out_dim, self.cfg.model.hidden_size, self.num_classes,
                                     self.target, self.cfg.model.dropout)
        else:
            head = self.new_head(lm.out_dim)
            if head_state is not None:
                head.load_state_dict(head_state)
        model = JointNodeClassifier(lm, head)
        ddp = DDP(model, find_unused_parameters=True)  # the LM's pooler is unused
        opt = torch.optim.AdamW([
            {"params": lm.parameters(), "lr": s.lm_lr, "weight_decay": s.weight_decay},
            {"params": head.parameters(), "lr": s.gnn_lr, "weight_decay": s.weight_decay}])
        self.timer = PhaseTimer()
        self.counts = {"with_grad": 0, "no_grad": 0, "from_cache": 0, "refresh": 0}
        self.targets_seen = 0
        table.stats = CacheStats()
        losses = []
        batches = self._endless_batches(self.split_nodes("train"), s.batch_size,
                                        [0] if s.mode == "lm_only" else self.cfg.model.fanouts)
        model.train()
        if not s.lm_dropout:
            lm.lm.eval()  # no dropout; gradients still flow (see Stage3Config.lm_dropout)
        for step in range(1, s.max_steps + 1):
            with self.timer("sampling"):
                inp, seeds, blocks = next(batches)
            loss, n_in, n_train = self._joint_step(ddp, model, opt, table, inp, seeds, blocks, step)
            losses.append(loss)
            if step % 10 == 1 or step == s.max_steps:
                self.log(f"[stage3] step {step:4d}/{s.max_steps}  loss {loss:.4f}  "
                         f"(input nodes {n_in}: {n_train} with grad, {n_in - n_train} inference)")
        train_s = time.time() - t0
        stats = self._stage3_stats(table, train_s)
        enc = self.encode_all(lm, step=s.max_steps)
        self.log(f"[stage3] re-encoded all nodes with the fine-tuned LM in {enc['seconds']:.1f}s")
        k = max(1, len(losses) // 5)  # max_steps=0 just evaluates the stage-2 model
        metrics = {"val_acc": self.evaluate(head, "val"), "test_acc": self.evaluate(head, "test"),
                   "loss_first": sum(losses[:k]) / k if losses else None,
                   "loss_last": sum(losses[-k:]) / k if losses else None,
                   "losses": losses, "steps": s.max_steps, **stats,
                   "train_s": train_s, "encode_s": enc["seconds"], "seconds": time.time() - t0}
        self.finish("stage3", metrics, lm=lm, head=head)
        return metrics

    def _joint_step(self, ddp, model, opt, table, inp, seeds, blocks, step: int):
        """One stage-3 optimizer step; returns ``(loss, #input nodes, #with-grad nodes)``."""
        s, nt, timer = self.cfg.stage3, self.target, self.timer
        ids = inp[nt]
        with timer("communication"):
            degrees = (self.g.nodes[nt].data["in_degree"][ids]
                       if s.trainable_policy == "degree" else None)
            labels = self.labels(seeds[nt])
            h_other = table.read({t: v for t, v in inp.items() if t != nt})
        train_idx, infer_idx = select_trainable_nodes(
            len(ids), len(seeds[nt]), s.lm_train_nodes, generator=self.gen,
            policy=s.trainable_policy, degrees=degrees, deg_threshold=s.deg_threshold)
        h_infer = self._inference_embeddings(model.lm, table, ids[infer_idx], step)
        with timer("communication"):
            tokens = self.g.nodes[nt].data["input_ids"][ids[train_idx]]
        model.timings.clear()
        logits, h_train = ddp(blocks, tokens, train_idx, infer_idx, h_infer, h_other)
        timer.add("lm_grad_forward", model.timings["lm"])
        timer.add("gnn_forward", model.timings["head"])
        with timer("backward_optimizer"):
            loss = F.cross_entropy(logits, labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with timer("communication"):
            table.write(nt, ids[train_idx], h_train, step)
        self.counts["with_grad"] += len(train_idx)
        self.targets_seen += len(seeds[nt])
        if s.refresh_batch_size > 0:
            self._refresh(model.lm, table, step)
        return loss.item(), len(ids), len(train_idx)

    def _inference_embeddings(self, lm: LMEncoder, table: LMEmbeddingTable, ids: torch.Tensor,
                              step: int) -> torch.Tensor:
        """No-grad embeddings of inference nodes: cache hits, misses re-encoded (and cached)."""
        s, nt = self.cfg.stage3, self.target
        if s.inference_source == "encode":
            emb = self._encode_no_grad(lm, ids)
            self.counts["no_grad"] += len(ids)
            return emb
        with self.timer("communication"):
            emb, hit = table.lookup(nt, ids, step, s.cache_max_staleness)
        miss = ids[~hit]
        self.counts["from_cache"] += int(hit.sum())
        if len(miss):
            fresh = self._encode_no_grad(lm, miss)
            emb[~hit] = fresh
            self.counts["no_grad"] += len(miss)
            with self.timer("communication"):
                table.write(nt, miss, fresh, step)
        return emb

    def _encode_no_grad(self, lm: LMEncoder, ids: torch.Tensor) -> torch.Tensor:
        """Target-type nodes ``ids`` encoded without gradient (async pipeline, sparse rows)."""
        nt = self.target
        with self.timer("lm_no_grad"):
            return encode_pipelined(lm, self.g.nodes[nt].data["input_ids"].__getitem__, ids,
                                    self.cfg.stage3.lm_infer_batch_size, self.cfg.pipeline_depth,
                                    fetch_sparse=self.sparse_rows(nt))

    def _refresh(self, lm: LMEncoder, table: LMEmbeddingTable, step: int) -> None:
        """LEADING's second pipeline: re-encode random nodes without gradient into the cache."""
        s, nt = self.cfg.stage3, self.target
        n = self.g.num_nodes(nt)
        ids = torch.randint(0, n, (min(s.refresh_batch_size, n),), generator=self.gen).unique()
        emb = self._encode_no_grad(lm, ids)
        with self.timer("communication"):
            table.write(nt, ids, emb, step)
        self.counts["refresh"] += len(ids)

    def _stage3_stats(self, table: LMEmbeddingTable, train_s: float) -> dict:
        """Instrumentation summed over trainers: LM encodings (total and per node of the target
        type, per epoch of the training targets), cache counters, time split (seconds, max over
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
            [len(self.split_nodes("train")), self.targets_seen])).tolist()
        epochs = seen / max(1, n_train)  # passes over the training targets, partial batches counted
        n_nodes = self.g.num_nodes(self.target)
        per_node_epoch = {k: v / n_nodes / epochs for k, v in counts.items()} if epochs else {}
        return {"lm_encodings": counts, "epochs": epochs,
                "lm_encodings_per_node_per_epoch": per_node_epoch, "cache": cache,
                "time_split_s": split, "train_step_s": train_s / max(1, s.max_steps)}

    def _endless_batches(self, train_ids, batch_size, fanouts):
        while True:
            yield from node_batches(self.g, {self.target: train_ids}, fanouts, batch_size,
                                    shuffle=True)

    # ------------------------------------------------------------------ checkpoints
    def finish(self, name: str, metrics: dict, lm: Optional[LMEncoder] = None,
               head: Optional[GNNNodeClassifier] = None) -> None:
        """Record peak memory, write the stage checkpoint on rank 0, then a barrier."""
        rss = self.all_reduce(torch.tensor([peak_rss_mb()]), dist.ReduceOp.MAX)
        metrics["peak_rss_mb_max_trainer"] = float(rss.item())
        if self.ctx.is_main:
            def write_files(tmp):
                if lm is not None:
                    lm.save_pretrained(str(tmp / "lm"), tokenizer_source=self.cfg.model.lm)
                if head is not None:
                    torch.save(head.state_dict(), tmp / "gnn.pt")
            ckpt.write_stage(self.cfg.output_dir, name, metrics, write_files)
            acc = (f"  val_acc {metrics['val_acc']:.4f}  test_acc {metrics['test_acc']:.4f}"
                   if "val_acc" in metrics else "")
            print(f"[{name}] done in {metrics['seconds']:.1f}s{acc}", flush=True)
        dist.barrier()

    # ------------------------------------------------------------------ the pipeline
    def run(self) -> Dict[str, dict]:
        """Run the configured stages in order, skipping completed ones when ``resume``."""
        cfg, out = self.cfg, self.cfg.output_dir
        results: Dict[str, dict] = {}

        def done(name):
            return cfg.resume and ckpt.is_complete(out, name)

        def lm_of(name):
            path = ckpt.stage_dir(out, name) / "lm"
            return str(path) if path.exists() else None

        if cfg.baseline:
            results["baseline"] = (ckpt.load_metrics(out, "baseline") if done("baseline")
                                   else self.run_gnn_stage("baseline", None))
        if 1 in cfg.stages:
            results["stage1"] = ckpt.load_metrics(out, "stage1") if done("stage1") else self.stage1()
        stage1_lm = lm_of("stage1")
        if 2 in cfg.stages:
            if done("stage2"):
                results["stage2"] = ckpt.load_metrics(out, "stage2")
            else:
                results["stage2"] = self.run_gnn_stage("stage2", stage1_lm)
        if 3 in cfg.stages:
            if done("stage3"):
                results["stage3"] = ckpt.load_metrics(out, "stage3")
            else:
                if not ckpt.is_complete(out, "stage2"):
                    raise RuntimeError("stage 3 needs the stage-2 checkpoint; run stage 2 first")
                head_state = torch.load(ckpt.stage_dir(out, "stage2") / "gnn.pt")
                if self.table_lm != (stage1_lm or cfg.model.lm):
                    # the table must hold the embeddings of the LM that stage 3 starts from
                    lm = self.load_lm(stage1_lm)
                    self.encode_all(lm)
                    self.table_lm = stage1_lm or cfg.model.lm
                    del lm
                results["stage3"] = self.stage3(stage1_lm, head_state)
        if self.ctx.is_main:
            summary = {"config": to_dict(cfg), "stages": results}
            ckpt.write_json_atomic(f"{out}/results.json", summary)
        return results


def dumps_short(results: Dict[str, dict]) -> str:
    """Results without per-step loss lists (for logs)."""
    return json.dumps({k: {m: v for m, v in r.items() if m != "losses"} for k, r in results.items()})
