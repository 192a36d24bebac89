"""Real multi-process runs: 2 DGL servers + 2 trainers on 127.0.0.1/127.0.0.2, every stage."""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from lmgnn_dist.device import native_bf16_flags
from run_helpers import comparable, held_out_acc, tiny_config, tree_hash


def _run_pipeline(cfg_path, *overrides, timeout=600):
    # --verbose: every process's lines on the console, which these tests read
    return subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose", "--config",
                           str(cfg_path), *overrides], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("smoke")
    cfg = tiny_config(root, tiny_tag_dir, tiny_bert_dir)
    cfg["stage1"]["max_steps"] = 12
    cfg["stage2"]["epochs"] = 15
    cfg["stage3"].update(max_steps=12, inference_source="cache", lm_infer_batch_size=4,
                         trainable_policy="degree", deg_threshold=1, cache_max_staleness=2,
                         refresh_batch_size=4)
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    out = _run_pipeline(path)
    return root, path, out, time.time() - t0


def test_all_stages_exit_zero_with_finite_decreasing_loss(smoke_run):
    root, _, out, _ = smoke_run
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    # both machines served their partition and both trainers connected as distinct machines
    assert "Machine (0) group (0)" in out.stdout and "Machine (1) group (0)" in out.stdout
    res = json.loads((root / "run" / "results.json").read_text())
    st = res["stages"]
    assert set(st) == {"baseline", "stage1", "stage2", "stage3"}
    for name in ("stage1", "stage2", "stage3", "baseline"):
        assert all(math.isfinite(x) for x in st[name]["losses"]), name
    s1 = st["stage1"]["losses"]
    assert sum(s1[-3:]) / 3 < sum(s1[:3]) / 3
    # stage 1 ranked its held-out edges before training and at the end, and kept the best
    s1m = st["stage1"]
    steps = [h["step"] for h in s1m["val_history"]]  # 0, each epoch of its edges, the end
    assert steps[0] == 0 and steps[-1] == 12 and steps == sorted(set(steps))
    assert 0 < s1m["link_val"]["mrr"] <= 1 and s1m["link_val"]["num_edges"] > 0
    assert s1m["link_val"]["mrr"] == max(h["mrr"] for h in s1m["val_history"])
    assert s1m["best_step"] in (h["step"] for h in s1m["val_history"])
    s2 = st["stage2"]["losses"]
    assert s2[-1] < s2[0]
    # stage 3 starts from a converged stage 2 and samples neighbours on the servers (not
    # seeded), so its short loss curve is not monotone; its decrease is checked on the
    # deterministic lm_only run below. Here: it must not undo stage 2.
    # labels are readable from text and neighbours: training must beat chance clearly, on
    # all 30 held-out nodes (15 test nodes, 3 vs 12, alone are too few to tell learning from
    # the luck of the epoch that validation picks)
    assert held_out_acc(st["stage2"]) > 0.7 and held_out_acc(st["stage3"]) > 0.7
    # stage 3 encoded with gradient at most lm_train_nodes per step per trainer
    s3m = st["stage3"]
    enc, cache = s3m["lm_encodings"], s3m["cache"]
    assert 0 < enc["with_grad"] <= 2 * 12 * 6
    # every inference node was a cache hit or re-encoded; rows older than 2 steps went stale
    assert enc["from_cache"] == cache["hits"] > 0
    assert enc["no_grad"] == cache["misses"] + cache["stale_misses"] and cache["stale_misses"] > 0
    assert cache["misses"] == 0  # stage 2 filled every row before stage 3
    assert enc["refresh"] > 0 and 0 < cache["hit_rate"] < 1
    assert set(s3m["time_split_s"]) >= {"sampling", "lm_grad_forward", "lm_no_grad",
                                         "gnn_forward", "backward_optimizer", "communication"}
    assert s3m["lm_encodings_per_node_per_epoch"]["with_grad"] > 0
    # training time leaves out validation and the start's cache fill, each reported apart
    assert 0 <= s3m["cache_fill_s"] and 0 < s3m["train_s"]
    assert s3m["train_s"] + s3m["validation_s"] + s3m["cache_fill_s"] <= s3m["seconds"]
    assert res["peak_rss_job_mb"] > 0 and "3: joint LM+GNN fine-tune" in out.stdout
    # stage 3 validated the stage-2 model and each epoch, kept the best, then re-fit a GNN head
    # (15 targets per trainer in batches of 4: an epoch is 4 steps)
    assert [h["step"] for h in s3m["val_history"]] == [0, 4, 8, 12] and s3m["steps"] == 12
    refit = s3m["refit"]
    assert set(refit) >= {"kept", "val_acc", "test_acc", "best_epoch"}
    kept_val = max(refit["val_acc"], max(h["acc"] for h in s3m["val_history"]))
    assert s3m["val_acc"] == pytest.approx(kept_val)
    assert [h["step"] for h in refit["val_history"]] == list(range(1, 16))  # stage 2's epochs
    # each node-classification stage's final test evaluation, gathered from both trainers:
    # one row per test node, by the TAG's id (1000 + 7 i, label i % 2), its accuracy the
    # stage's test_acc; stage 1 (link prediction) has none. Every stage names its code.
    for name in ("baseline", "stage2", "stage3"):
        pred = np.load(root / "run" / name / "test_predictions.npz")
        n_test = sum(st[name]["test_support"].values())
        assert len(pred["node_id"]) == len(pred["pred"]) == len(pred["label"]) == n_test > 0
        assert (np.diff(pred["node_id"]) > 0).all() and ((pred["node_id"] - 1000) % 7 == 0).all()
        assert (pred["label"] == (pred["node_id"] - 1000) // 7 % 2).all()
        assert (pred["pred"] == pred["label"]).mean() == pytest.approx(st[name]["test_acc"])
    assert not (root / "run" / "stage1" / "test_predictions.npz").exists()
    for name in st:
        assert len(st[name]["code"]["commit"]) >= 7 and isinstance(st[name]["code"]["modified"],
                                                                    list), name


def test_a_second_run_of_the_same_seed_gives_the_same_numbers(smoke_run, tmp_path):
    """Reproducible runs: the same config, seed and partitions in a new run folder give every
    stage's losses, validation histories, val/test metrics, LM-encoding and cache counters bit
    for bit (trainer-side seeded neighbour sampling, per-epoch batch generators, stage 3's
    cache writes after its reads and in rank order)."""
    root, path, first, _ = smoke_run
    assert first.returncode == 0
    again = _run_pipeline(path, f"output_dir={tmp_path / 'run'}")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    a = json.loads((root / "run" / "results.json").read_text())["stages"]
    b = json.loads((tmp_path / "run" / "results.json").read_text())["stages"]
    assert list(a) == list(b) == ["baseline", "stage1", "stage2", "stage3"]
    for stage in a:
        assert comparable(a[stage]) == comparable(b[stage]), stage


def test_checkpoints_load_in_plain_transformers(smoke_run):
    import torch
    from transformers import AutoModel, AutoTokenizer

    root, _, out, _ = smoke_run
    assert out.returncode == 0
    for stage in ("stage1", "stage3"):
        lm_dir = root / "run" / stage / "lm"
        model = AutoModel.from_pretrained(lm_dir)
        tok = AutoTokenizer.from_pretrained(lm_dir)
        assert model.config.hidden_size == 32 and tok("hi")["input_ids"][0] == tok.cls_token_id
    state = torch.load(root / "run" / "stage2" / "gnn.pt")
    assert state["decoder.linear.weight"].shape == (2, 16)
    # stage 3 started from stage 1's LM, not from the pre-trained one
    s1 = AutoModel.from_pretrained(root / "run" / "stage1" / "lm").state_dict()
    s3 = AutoModel.from_pretrained(root / "run" / "stage3" / "lm").state_dict()
    base = AutoModel.from_pretrained(json.loads((root / "run" / "results.json").read_text())
                                     ["config"]["model"]["lm"]).state_dict()
    key = "encoder.layer.0.attention.self.query.weight"
    st = json.loads((root / "run" / "results.json").read_text())["stages"]
    # the saved LMs are those of the step each stage reports keeping
    assert torch.equal(s1[key], base[key]) == (st["stage1"]["best_step"] == 0)
    hist = st["stage1"]["val_history"]
    best = max(hist, key=lambda h: h["mrr"])  # the first of equals is kept
    assert st["stage1"]["best_step"] == best["step"] and len(hist) == 3
    # (on this tiny graph's 6 held-out edges the MRR fell from step 0 since the partitions
    # are split by seeded METIS, so stage 1 keeps the pre-trained LM and stage 1's and the
    # pre-trained weights cannot be told apart below; that stage 3 starts from stage 1's
    # folder is test_runplan's start_of("stage3"))
    if st["stage3"]["lm_step"] == 0:  # stage 3 kept the LMs it started from: stage 1's
        assert torch.equal(s3[key], s1[key])
    else:
        assert (s3[key] - s1[key]).norm() < (s3[key] - base[key]).norm()


def test_resume_skips_completed_stages(smoke_run):
    root, path, first, first_s = smoke_run
    assert first.returncode == 0
    before = json.loads((root / "run" / "results.json").read_text())["stages"]
    out = _run_pipeline(path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "using existing partitions" in out.stdout
    assert "[stage1] step" not in out.stdout and "[stage3] step" not in out.stdout
    after = json.loads((root / "run" / "results.json").read_text())["stages"]
    assert after == before


def _rerun_stage3(smoke_run, out_dir, *overrides, log=None, loop="[stage3] step"):
    """Run only stage 3 again (stages 1-2 and the baseline reused from the smoke run);
    ``log``: a line the console must show; ``loop``: its training loop's log lines."""
    import shutil

    root, path, first, _ = smoke_run
    assert first.returncode == 0
    for stage in ("baseline", "stage1", "stage2"):
        shutil.copytree(root / "run" / stage, out_dir / stage)
    out = _run_pipeline(path, f"output_dir={out_dir}", *overrides)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[stage1] step" not in out.stdout and loop in out.stdout
    assert log is None or log in out.stdout, out.stdout[-3000:]
    return json.loads((out_dir / "results.json").read_text())["stages"]["stage3"]


def test_stage3_reencode_path_and_sync_pipeline(smoke_run, tmp_path):
    """inference_source=encode, random policy, synchronous pipeline, sparse attention for
    inference nodes of in-degree < 3."""
    root, path, first, _ = smoke_run
    assert first.returncode == 0
    # sparse attention changes every no-grad encode, stage 2's too: stages 2 and 3 alone
    out = _run_pipeline(path, f"output_dir={tmp_path / 'run2'}", "stages=[2,3]",
                        "baseline=false", "stage3.inference_source=encode",
                        "stage3.trainable_policy=random", "pipeline_depth=0",
                        "model.sparse_attention.enabled=true",
                        "model.sparse_attention.block_size=4",
                        "model.sparse_attention.deg_threshold=3",
                        "model.sparse_attention.first_dense_layers=0")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    s3 = json.loads((tmp_path / "run2" / "results.json").read_text())["stages"]["stage3"]
    enc = s3["lm_encodings"]
    assert enc["from_cache"] == 0 and enc["no_grad"] > 0 and s3["cache"]["hits"] == 0
    assert all(math.isfinite(x) for x in s3["losses"])


def test_stage3_lm_only_mode_encodes_only_targets_and_learns(smoke_run, tmp_path):
    """The benchmark's cost floor: LM + fresh MLP head on the targets alone, no graph.

    With fanout 0 nothing is sampled on the servers, and stage 1 (whose LM it starts from)
    samples only on the trainers, whose RNGs are reseeded per stage, so the run is
    deterministic and its loss curve (back-prop through LM and head) can be checked for a
    decrease without flakiness.
    """
    s3 = _rerun_stage3(smoke_run, tmp_path / "run3", "stage3.mode=lm_only",
                       "stage3.lm_train_nodes=1000", "stage3.max_steps=36")
    enc = s3["lm_encodings"]
    # each trainer has 15 training targets: batches of 4, 4, 4, 3, so 36 steps are 9 epochs;
    # exactly the targets were encoded, nothing else
    assert enc["with_grad"] == 2 * 9 * 15 and s3["epochs"] == 9.0
    assert s3["lm_encodings_per_node_per_epoch"]["with_grad"] == 30 / 60  # 30 targets, 60 nodes
    assert enc["no_grad"] == 0 and enc["from_cache"] == 0
    losses = s3["losses"]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.05


def test_stage3_keeps_its_best_validation_model_and_stops_early(smoke_run, tmp_path):
    """A learning rate that wrecks the model: stage 3 validates the stage-2 model (step 0) and
    every 2 steps, keeps the best LMs + head, stops after 2 validations without improvement,
    and reports the kept model re-encoded (no re-fit here)."""
    stage2 = json.loads((smoke_run[0] / "run" / "results.json").read_text())["stages"]["stage2"]
    s3 = _rerun_stage3(smoke_run, tmp_path / "run4", "stage3.lm_lr=0.05", "stage3.gnn_lr=0.5",
                       "stage3.schedule=constant", "stage3.warmup_ratio=0",
                       "stage3.max_grad_norm=null", "stage3.eval_every=2", "stage3.patience=2",
                       "stage3.refit_gnn=false", "stage3.max_steps=12")
    history = s3["val_history"]
    # step 0 is the stage-2 model on the same LM's embeddings
    assert history[0]["step"] == 0 and history[0]["acc"] == pytest.approx(stage2["val_acc"])
    best = max(history, key=lambda h: h["acc"])  # max() returns the first of ties
    assert s3["best_step"] == best["step"]
    # the kept LMs, re-encoded, give back the validation score they were kept for
    assert s3["val_acc"] == pytest.approx(best["acc"]) and s3["val_acc"] >= stage2["val_acc"]
    assert min(h["acc"] for h in history) < best["acc"]  # selection mattered
    assert s3["stopped_early"] and s3["steps"] < 12
    assert [h["step"] for h in history] == list(range(0, s3["steps"] + 1, 2))
    after = [h["acc"] for h in history if h["step"] > best["step"]]
    assert len(after) == 2 and max(after) <= best["acc"]
    assert "refit" not in s3


def test_stage3_pseudo_labels_join_the_batches_and_get_lm_gradient(smoke_run, tmp_path):
    """GLEM's pseudo-labels: the stage-2 model labels each trainer's test targets (8 and 7 of
    the 15; the 15 validation targets stay out); each batch of gold targets (4, 4, 4, 3) is
    joined by as many pseudo ones, and with every target encoded with gradient the LM sees
    twice the gold count; epochs still count gold."""
    s3 = _rerun_stage3(smoke_run, tmp_path / "run6", "stage3.pseudo_label_weight=0.5",
                       "stage3.trainable_policy=targets", "stage3.lm_train_nodes=1000",
                       "stage3.max_steps=8", "stage3.refit_gnn=false", log="pseudo-labels: 8 "
                       "of this trainer's 8 targets in neither the training nor the "
                       "validation split")
    assert s3["epochs"] == 2.0 and s3["lm_encodings"]["with_grad"] == 2 * 2 * (2 * 15)
    assert all(math.isfinite(x) for x in s3["losses"])


def test_stage3_glem_rounds_teach_the_lm_and_the_gnn_with_each_others_labels(smoke_run,
                                                                             tmp_path):
    """``stage3.mode: glem``, 2 rounds: each LM phase trains 8 steps (2 epochs of the 15 gold
    targets per trainer in batches 4, 4, 4, 3) with as many GNN pseudo-labelled targets per
    batch, every one with gradient; each GNN phase fits a fresh GNN for 5 epochs on gold + the
    LM's pseudo-labels. Both teachers label the same pool: each trainer's test targets (8 on
    rank 0), never the validation ones. The best round by validation is kept (round 0 is
    stage 2's model), and its re-evaluated val score is the one it was kept for."""
    root = smoke_run[0]
    stage2 = json.loads((root / "run" / "results.json").read_text())["stages"]["stage2"]
    out_dir = tmp_path / "run7"
    s3 = _rerun_stage3(smoke_run, out_dir, "stage3.mode=glem", "stage3.pseudo_label_weight=0.5",
                       "stage3.max_steps=8", "stage3.glem_rounds=2", "stage3.refit_epochs=5",
                       log="[stage3] GLEM round 2: LM alone val acc",
                       loop="[stage3_glem2_lm] step")
    assert s3["variant"] == "glem" and [r["round"] for r in s3["rounds"]] == [1, 2]
    # every pseudo-label pool: rank 0's 8 test targets (threshold 0), from both teachers
    assert all(r["lm_pseudo"] == 8 and r["gnn_pseudo"] == 8 for r in s3["rounds"])
    # with-grad LM encodings: 2 rounds x 2 trainers x 2 epochs x (15 gold + 15 pseudo)
    enc = s3["lm_encodings"]
    assert enc["with_grad"] == 2 * 2 * 2 * 30 and enc["no_grad"] == 0
    assert enc["full_reencode"] == 2 * 60 and s3["steps"] == 16 and s3["epochs"] == 4.0
    history = s3["val_history"]
    assert [h["step"] for h in history] == [0, 1, 2]
    assert history[0]["acc"] == pytest.approx(stage2["val_acc"])
    for r, h in zip(s3["rounds"], history[1:]):
        assert h["acc"] == pytest.approx(r["gnn_val_acc"])
    best = max(history, key=lambda h: h["acc"])  # the first of ties
    assert s3["best_step"] == best["step"] and s3["val_acc"] == pytest.approx(best["acc"])
    assert s3["head"] == ("glem" if best["step"] else "joint")
    assert 0 < s3["train_s"] < s3["seconds"] and held_out_acc(s3) > 0.7
    # the phases' seconds add up to the stage's; the end re-encodes only for an earlier round
    parts = ("train_s", "cache_fill_s", "validation_s", "encode_s")
    assert sum(s3[k] for k in parts) == pytest.approx(s3["seconds"], abs=0.5)
    assert (s3["encode_s"] > 0) == (s3["best_step"] < 2)
    assert 0 < s3["mlp_warm"]["val_acc"] <= 1  # the LM's classifier, warmed before round 1


TASK_STAGE1 = ("stages=[1,2]", "baseline=false", "stage1.objective=task", "stage1.max_steps=16",
               "stage1.batch_size=4", "stage1.lm_lr=1e-3", "stage1.decoder_lr=1e-2",
               "stage1.eval_every=4")


@pytest.fixture(scope="module")
def task_stage1_run(smoke_run, tmp_path_factory):
    """Stages 1 (``objective: task``) and 2 of the smoke config: ``(output dir, stdout)``."""
    root, path, first, _ = smoke_run
    out_dir = tmp_path_factory.mktemp("task") / "run5"
    out = _run_pipeline(path, f"output_dir={out_dir}", *TASK_STAGE1)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out_dir, out.stdout


def test_stage1_task_objective_tunes_the_lm_that_stage2_uses(task_stage1_run):
    """``stage1.objective: task``: the LM fine-tuned on the labels with an MLP head (its own
    val/test metrics and kept best step), then stage 2 on that LM's embeddings."""
    out_dir, stdout = task_stage1_run
    st = json.loads((out_dir / "results.json").read_text())["stages"]
    s1, s2 = st["stage1"], st["stage2"]
    assert [h["step"] for h in s1["val_history"]] == [4, 8, 12, 16]
    assert s1["val_acc"] == pytest.approx(max(h["acc"] for h in s1["val_history"]))
    assert s1["lm_encodings"]["no_grad"] == 0 and s1["lm_encodings"]["with_grad"] > 0
    assert s2["lm"] == str(out_dir / "stage1" / "lm") and held_out_acc(s2) > 0.7
    assert "1: LM fine-tune on the task (MLP)" in stdout and "LP loss" not in stdout
    assert "cross_fit" not in s1 and "out_of_fold" not in s2
    assert not (out_dir / "stage1" / "oof_emb").exists()


def test_stage1_cross_fit_feeds_stage2_out_of_fold_rows(smoke_run, task_stage1_run, tmp_path):
    """``stage1.cross_fit_folds=2``: the stage's own LM is the plain task run's (same seed);
    two fold LMs, each fine-tuned on the training targets outside its fold, encode their fold;
    every training target gets exactly one out-of-fold row, and stage 2 trains on them (its
    losses differ from the plain run's, whose stage 1 LM is the same)."""
    _, path, _, _ = smoke_run
    plain_dir, _ = task_stage1_run
    out_dir = tmp_path / "run_cf"
    out = _run_pipeline(path, f"output_dir={out_dir}", *TASK_STAGE1, "stage1.cross_fit_folds=2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    st = json.loads((out_dir / "results.json").read_text())["stages"]
    plain = json.loads((plain_dir / "results.json").read_text())["stages"]
    s1, s2 = st["stage1"], st["stage2"]
    # the stage's own LM is untouched by the folds fitted after it
    assert s1["val_history"] == plain["stage1"]["val_history"]
    assert s1["val_acc"] == plain["stage1"]["val_acc"]
    cf = s1["cross_fit"]
    n_train = cf["fold"][0]["train_targets"] + cf["fold"][0]["encoded"]
    assert cf["folds"] == 2 and [f["fold"] for f in cf["fold"]] == [0, 1]
    assert [f["encoded"] for f in cf["fold"]] == [n_train - f["train_targets"]
                                                   for f in cf["fold"]]
    assert sum(f["encoded"] for f in cf["fold"]) == n_train and min(
        f["encoded"] for f in cf["fold"]) > 0
    assert all(0 <= f["val_acc"] <= 1 for f in cf["fold"])
    assert "fold 2/2: LM fine-tuned on" in out.stdout
    rows = [torch.load(f) for f in sorted((out_dir / "stage1" / "oof_emb").glob("rank-*.pt"))]
    assert len(rows) == 2  # one file per trainer
    ids = torch.cat([r["ids"] for r in rows])
    emb = torch.cat([r["emb"] for r in rows])
    assert len(ids) == len(set(ids.tolist())) == n_train
    assert emb.shape == (n_train, 32) and emb.dtype == torch.float32 and emb.isfinite().all()
    assert s2["out_of_fold"] == {"rows": n_train, "folds": 2}
    assert s2["losses"] != plain["stage2"]["losses"]  # stage 2 read the out-of-fold rows
    assert held_out_acc(s2) > 0.5


def test_stage1_head_warmup_is_the_head_fine_tuning_starts_from(smoke_run, tmp_path):
    """``stage1.head_warmup_epochs`` (LP-FT): with no LM step (``max_steps=0``) the stage's
    model is the frozen LM + the warmed MLP head, so its validation accuracy is the warm-up's
    own; without the warm-up the same run validates a random head (at or near chance on the
    tiny graph's classes)."""
    _, path, _, _ = smoke_run
    runs = {}
    for warm in (0, 4):
        out_dir = tmp_path / f"warm{warm}"
        out = _run_pipeline(path, f"output_dir={out_dir}", *TASK_STAGE1, "stages=[1]",
                            "stage1.max_steps=0", f"stage1.head_warmup_epochs={warm}")
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        runs[warm] = (json.loads((out_dir / "results.json").read_text())["stages"]["stage1"],
                      out.stdout)
    s1, stdout = runs[4]
    hw = s1["head_warmup"]
    assert hw["epochs"] == 4 and 0 <= hw["best_epoch"] < 4
    assert s1["val_acc"] == pytest.approx(hw["val_acc"])  # the warmed head, unchanged
    assert s1["test_acc"] == pytest.approx(hw["test_acc"])
    assert "MLP head warmed on the frozen LMs' embeddings for 4 epochs" in stdout
    plain, _ = runs[0]
    assert "head_warmup" not in plain
    assert hw["val_acc"] > plain["val_acc"] + 0.1  # a fitted head against a random one


def test_embed_layerwise_matches_minibatch_and_exports(smoke_run, tmp_path):
    import re

    import numpy as np
    import pyarrow.parquet as pq
    from transformers import AutoModel

    from partition.tag import read_tag

    root, path, first, _ = smoke_run
    assert first.returncode == 0
    cfg = root / "run" / "config.yaml"
    out = tmp_path / "emb"

    run_hash = tree_hash(root / "run")

    def embed(via_launcher: bool):
        args = ["--config", str(cfg), "--checkpoint", str(root / "run" / "stage3"), "--out",
                str(out), "--verify", "60", "--batch-size", "7"]
        # lmgnn-embed (the driver), or the job module under the launcher's command line
        cmd = ([sys.executable, "-m", "lmgnn_dist.drivers.embed", *args] if not via_launcher
               else [sys.executable, "launch/run_dist.py", "--debug-local", "2", "--workspace",
                     str(tmp_path), "--part-config", str(root / "parts" / "tiny.json"), "--",
                     sys.executable, "-m", "lmgnn_dist.jobs.embed", *args])
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    proc = embed(via_launcher=False)
    assert "[embed] LM chunks: 1 encoded, 0 reused" in proc.stdout
    # the training run's folder is byte-identical; the export's logs are under --out
    assert tree_hash(root / "run") == run_hash
    assert (out / "logs" / "trainer-0.log").is_file() and (out / "ip_config_debug.txt").is_file()
    assert f"LMs from shared={root / 'run' / 'stage3' / 'lm'}" in proc.stdout
    diff = float(re.search(r"max \|layer-wise - mini-batch\| GNN output = (\S+)", proc.stdout).group(1))
    assert diff < 1e-4  # layer-wise == mini-batch inference with full neighbourhoods
    emb = pq.read_table(out / "embeddings" / "paper").to_pandas()
    pred = pq.read_table(out / "predictions" / "paper").to_pandas()
    want_ids = set(read_tag(json.loads((root / "run" / "results.json").read_text())
                            ["config"]["data"]["tag_path"]).nodes["paper"].ids.tolist())
    assert len(emb) == 60 and emb["id"].is_unique and set(emb["id"]) == want_ids
    assert {len(e) for e in emb["emb"]} == {16} and np.isfinite(np.stack(emb["emb"])).all()
    assert set(pred["id"]) == want_ids and set(pred["pred"]) <= {0, 1}
    assert pred["prob"].between(0.5, 1.0).all()
    assert AutoModel.from_pretrained(out / "lm").config.hidden_size == 32
    # resumable: rerun after losing trainer 1's chunk: trainer 0 reuses its chunk, trainer 1
    # re-encodes; the result is the same
    chunk, = (out / "lm_chunks").glob("*/paper/rank1of2-000000.npy")
    chunk.unlink()
    # the job module under the launcher this time
    assert "[embed] LM chunks: 0 encoded, 1 reused" in embed(via_launcher=True).stdout
    again = pq.read_table(out / "embeddings" / "paper").to_pandas().set_index("id")
    first_run = emb.set_index("id").loc[again.index]
    assert np.allclose(np.stack(again["emb"]), np.stack(first_run["emb"]), atol=1e-6)


def _run_and_kill_trainer1(args, when: str):
    """Run the pipeline ``args``; SIGKILL trainer 1 once a line contains ``when``.
    Returns (killed, exit code, output)."""
    import signal

    import psutil

    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    killed, lines = False, []
    for line in proc.stdout:
        lines.append(line)
        if not killed and when in line:
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    env = p.environ()
                except psutil.Error:
                    continue
                if env.get("DGL_ROLE") == "client" and env.get("RANK") == "1":
                    p.send_signal(signal.SIGKILL)
                    killed = True
    return killed, proc.wait(timeout=300), "".join(lines)


def _killed_and_resumed(path, over, stage, when, resumed):
    """One pipeline run: trainer 1 SIGKILLed at ``when``; the driver restarts the job, which
    continues ``stage`` from its progress checkpoint (``resumed``). Returns the output after
    the restart."""
    killed, rc, out = _run_and_kill_trainer1(
        [sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose", "--config", str(path), *over],
        when)
    assert killed and rc == 0, out[-4000:]
    # the launcher stops the job at the first failure it sees: the killed trainer (-9) or a
    # peer whose collective broke; then the driver restarts the job once
    assert re.search(r"\[launcher\] (trainer|server)-\S+ exited with code -?\d+", out), out[-3000:]
    assert "restart 1/2" in out and "restart 2/2" not in out
    after = out[out.index("restart 1/2"):]
    assert resumed in after
    return after


def test_stage3_resumes_mid_epoch_with_the_uninterrupted_numbers(smoke_run, tmp_path):
    """checkpoint_every=3 (an epoch is 4 steps): a trainer SIGKILLed after step 6 of 12; the
    restarted job continues at step 7 from `stage3.partial/` (model, optimizer, RNG, counters)
    and re-creates the rest of epoch 2's batches, so the stage ends with the numbers of an
    uninterrupted run, bit for bit (validation every 3 steps re-encodes every node, so the
    resumed job's cache holds what the interrupted one's held). With the auxiliary LM
    classifier (its weights and optimizer state are in the checkpoint too) and per-group
    clipping."""
    import shutil

    root, path, first, _ = smoke_run
    assert first.returncode == 0
    over = ["checkpoint_every=3", "stage3.eval_every=3", "stage3.max_steps=12",
            "stage3.lm_aux_weight=0.5", "stage3.clip_per_group=true"]
    runs = {}
    for name in ("whole", "cut"):
        out_dir = tmp_path / name
        for stage in ("baseline", "stage1", "stage2"):
            shutil.copytree(root / "run" / stage, out_dir / stage)
        runs[name] = out_dir
    whole = _run_pipeline(path, f"output_dir={runs['whole']}", *over)
    assert whole.returncode == 0, whole.stdout[-3000:]
    after = _killed_and_resumed(
        path, [f"output_dir={runs['cut']}", *over], "stage3",
        "[stage3] progress checkpoint after step 6",
        "[stage3] resuming after step 6 from its progress checkpoint")
    assert "[stage3] step    1/12" not in after and "[stage3] step   11/12" in after
    s3, ref = (json.loads((runs[n] / "results.json").read_text())["stages"]["stage3"]
               for n in ("cut", "whole"))
    assert len(s3["losses"]) == 12 and all(math.isfinite(x) for x in s3["losses"])
    assert not (runs["cut"] / "stage3.partial").exists()  # the finished stage removed it
    assert comparable(s3) == comparable(ref)


def test_stage1_resumes_mid_stage(smoke_run, tmp_path):
    root, path, first, _ = smoke_run
    assert first.returncode == 0
    out_dir = tmp_path / "run"
    after = _killed_and_resumed(
        path, [f"output_dir={out_dir}", "checkpoint_every=4", "stage1.max_steps=12",
               "stages=[1]", "baseline=false"], "stage1",
        "[stage1] progress checkpoint after step 8",
        "[stage1] resuming after step 8 from its progress checkpoint")
    assert "[stage1] step    1/12" not in after and "[stage1] step   11/12" in after
    s1 = json.loads((out_dir / "results.json").read_text())["stages"]["stage1"]
    assert len(s1["losses"]) == 12 and (out_dir / "stage1" / "lm").is_dir()
    assert not (out_dir / "stage1.partial").exists()
    first_s1 = json.loads((root / "run" / "results.json").read_text())["stages"]["stage1"]
    assert comparable(s1) == comparable(first_s1)  # as if never interrupted


def test_stage2_resumes_after_its_last_progress_epoch(smoke_run, tmp_path):
    import shutil

    root, path, first, _ = smoke_run
    assert first.returncode == 0
    out_dir = tmp_path / "run"
    shutil.copytree(root / "run" / "stage1", out_dir / "stage1")
    # 15 training targets per trainer in batches of 8: 2 steps per epoch, a checkpoint per epoch
    after = _killed_and_resumed(
        path, [f"output_dir={out_dir}", "checkpoint_every=2", "stages=[2]", "baseline=false"],
        "stage2", "[stage2] progress checkpoint after epoch 6",
        "[stage2] resuming after epoch 6 from its progress checkpoint")
    assert "[stage2] epoch    1/" not in after and "[stage2] epoch   11/" in after
    s2 = json.loads((out_dir / "results.json").read_text())["stages"]["stage2"]
    assert len(s2["losses"]) == 15 and 0 <= s2["best_epoch"] < 15
    first_s2 = json.loads((root / "run" / "results.json").read_text())["stages"]["stage2"]
    assert comparable(s2) == comparable(first_s2)  # as if never interrupted
    assert held_out_acc(s2) > 0.7 and not (out_dir / "stage2.partial").exists()


def test_bf16_on_cpu_runs_every_stage_and_the_export(tmp_path, tiny_tag_dir, tiny_bert_dir):
    """launch.precision=bf16 on the CPU (issue 25: it raised on the attention mask within
    seconds): stages 1-3 -- with-grad steps, no-grad cache fills and stage-3 re-encodes over
    rows of different lengths (a real padding mask), validation -- and the embedding export
    run, losses are finite and fall, and every stage records precision bf16."""
    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir, baseline=False)
    cfg["stage1"]["max_steps"] = 12
    cfg["stage3"].update(inference_source="encode", lm_infer_batch_size=4)
    cfg["launch"]["precision"] = "bf16"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = _run_pipeline(path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "[trainer] devices: LMs on cpu in bf16" in out.stdout
    # the console warns exactly when this CPU lacks bf16 units (bf16 is emulated, slow)
    warned = "WARNING: launch.precision=bf16 on a CPU without" in out.stdout
    assert warned == (not native_bf16_flags())
    st = json.loads((tmp_path / "run" / "results.json").read_text())["stages"]
    assert set(st) == {"stage1", "stage2", "stage3"}
    for name, m in st.items():
        assert m["precision"] == "bf16", name
        assert m["losses"] and all(math.isfinite(x) for x in m["losses"]), name
    s1, s2 = st["stage1"]["losses"], st["stage2"]["losses"]
    assert sum(s1[-3:]) / 3 < sum(s1[:3]) / 3 and s2[-1] < s2[0]
    assert st["stage3"]["lm_encodings"]["with_grad"] > 0
    assert st["stage3"]["lm_encodings"]["no_grad"] > 0  # inference_source=encode
    assert held_out_acc(st["stage2"]) > 0.7 and held_out_acc(st["stage3"]) > 0.7
    emb_out = tmp_path / "emb"
    proc = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.embed", "--config",
                           str(tmp_path / "run" / "config.yaml"), "--checkpoint",
                           str(tmp_path / "run" / "stage3"), "--out", str(emb_out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import numpy as np
    import pyarrow.parquet as pq

    emb = np.stack(pq.read_table(emb_out / "embeddings" / "paper").to_pandas()["emb"])
    assert emb.shape == (60, 16) and np.isfinite(emb).all() and emb.dtype == np.float32
