"""The three tasks on a heterogeneous graph, each a real run of every stage on 2 DGL servers +
2 trainers (127.0.0.1 / 127.0.0.2): edge classification with a node type that has its own LM
and a text-less type with learnable embeddings; link prediction with held-out edges; node
classification of a type in a heterogeneous graph. Stages 2-3 and the embedding export also run
with the RGAT encoder (``model.gnn=rgat``) from the edge-classification run's stage 1."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from run_helpers import tiny_config


def _run(root, name, tiny_hetero_dir, tiny_bert_dir, task, **extra):
    cfg = tiny_config(root / name, tiny_hetero_dir, tiny_bert_dir, task=task)
    cfg["data"]["graph_name"] = "th"
    cfg["model"].update(extra.pop("model", {}))
    if "precision" in extra:
        cfg["launch"]["precision"] = extra.pop("precision")
    cfg["stage1"].update(max_steps=10, val_edges=0)  # the last step's LMs (no selection)
    cfg["stage2"]["epochs"] = 25
    cfg["stage3"].update(max_steps=8, batch_size=4, lm_train_nodes=8, lm_infer_batch_size=8,
                         refresh_batch_size=4)
    cfg.update(extra)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose", "--config", str(path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "Machine (0) group (0)" in out.stdout and "Machine (1) group (0)" in out.stdout
    res = json.loads((root / name / "run" / "results.json").read_text())
    assert set(res["stages"]) == {"baseline", "stage1", "stage2", "stage3"}
    for st in res["stages"].values():
        assert all(math.isfinite(x) for x in st["losses"])
    return res, out


@pytest.fixture(scope="module")
def ec_run(tmp_path_factory, tiny_hetero_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("hetero_ec")
    res, out = _run(root, "ec", tiny_hetero_dir, tiny_bert_dir,
                    {"kind": "edge_classification",
                     "target_etype": "question__has_answer__answer"},
                    model={"encoders": {"tag": str(tiny_bert_dir)}, "embedding_lr": 0.05},
                    # fp32: the F1 thresholds below sit within what 20 test edges resolve, and
                    # bf16's numerics moved the RGAT stage 2's val + test macro-F1 mean to 0.56
                    # (5172f7a); bf16 through every stage is test_smoke_dist's bf16 test
                    precision="fp32")
    return root, res, out


def test_edge_classification_all_stages(ec_run):
    root, res, out = ec_run
    assert res["task"] == "edge_classification" and res["primary"] == "macro_f1"
    for name in ("baseline", "stage2", "stage3"):
        st = res["stages"][name]
        for split in ("val", "test"):
            assert set(st[f"{split}_f1_per_class"]) == {"not_accepted", "accepted"}
            f1 = st[f"{split}_f1_per_class"]
            assert st[f"{split}_macro_f1"] == pytest.approx(sum(f1.values()) / 2)
            assert sum(st[f"{split}_support"].values()) == 20  # 80 edges, 25% val / 25% test
    # the verdict words are in the answer's text: the warm-started model must beat chance
    # (0.5) clearly. 20 test edges: one edge moves macro-F1 by ~5 points, and the unseeded
    # server-side sampling gave 0.67 once on a loaded machine (0.79-0.85 in three runs alone).
    assert res["stages"]["stage2"]["test_macro_f1"] > 0.6
    assert res["stages"]["stage3"]["test_macro_f1"] > 0.6
    assert "macro-f1" in out.stdout  # the per-stage table reports the task's primary metric


def test_own_lm_per_type_and_learnable_embeddings(ec_run):
    import torch
    from transformers import AutoModel

    root, res, _ = ec_run
    run = root / "ec" / "run"
    key = "encoder.layer.0.attention.self.query.weight"
    base = AutoModel.from_pretrained(res["config"]["model"]["lm"]).state_dict()[key]
    shared = AutoModel.from_pretrained(run / "stage1" / "lm").state_dict()[key]
    own = AutoModel.from_pretrained(run / "stage1" / "lm_tag").state_dict()[key]
    # both were fine-tuned in stage 1, as separate copies of the same initial model
    assert not torch.equal(shared, base) and not torch.equal(own, base)
    assert not torch.equal(shared, own)
    # the text-less 'user' type: one learnable row per node, saved by both trainers, changed
    # by stage 3 (users reach the answers through their questions in 2 hops)
    def rows(stage):
        parts = [torch.load(p) for p in sorted((run / stage / "node_emb" / "user").glob("part-*.pt"))]
        assert len(parts) == 2
        ids = torch.cat([p["ids"] for p in parts])
        emb = torch.cat([p["emb"] for p in parts])
        return emb[torch.argsort(ids)], ids
    s2, ids = rows("stage2")
    s3, _ = rows("stage3")
    assert sorted(ids.tolist()) == list(range(8)) and s2.shape == (8, 32)
    s3m = res["stages"]["stage3"]
    kept_start = s3m["lm_step"] == 0 and s3m["head"] == "joint"  # stage 2's model kept
    assert torch.isfinite(s3).all() and torch.equal(s2, s3) == kept_start


@pytest.fixture(scope="module")
def ec_rgat_run(ec_run, tmp_path_factory):
    """``ec_run``'s stages 2 and 3 again with the RGAT encoder (2 heads), from its stage-1
    LMs (no baseline): the second GNN encoder through a real job on six relations."""
    import shutil

    root = ec_run[0]
    run = tmp_path_factory.mktemp("hetero_ec_rgat") / "run"
    shutil.copytree(root / "ec" / "run" / "stage1", run / "stage1")
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose", "--config",
                          str(root / "ec.yaml"), f"output_dir={run}", "baseline=false",
                          "model.gnn=rgat", "model.num_heads=2"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "[stage1] step" not in out.stdout and "[stage3] step" in out.stdout
    return run, json.loads((run / "results.json").read_text())


def test_rgat_stages_2_and_3(ec_rgat_run):
    import torch

    run, res = ec_rgat_run
    assert res["config"]["model"]["gnn"] == "rgat" and set(res["stages"]) >= {"stage2", "stage3"}
    for name in ("stage2", "stage3"):
        st = res["stages"][name]
        assert all(math.isfinite(x) for x in st["losses"]) and len(st["losses"]) > 0
        assert 0.0 <= st["test_macro_f1"] <= 1.0
        assert sum(st["test_support"].values()) == 20
    state = torch.load(run / "stage3" / "gnn.pt")
    # one GATConv per relation and layer: 2 heads x 8 = hidden 16, attention vectors [1, 2, 8]
    attn = {k: v.shape for k, v in state.items() if k.endswith("attn_l")}
    assert len(attn) == 2 * 6 and set(attn.values()) == {(1, 2, 8)}
    # chance is 0.5; val and test together (40 edges): one run gave 0.78 / 0.69 (RGCN's stage
    # 2 on the same LMs: 0.83 / 0.85), so 20 test edges alone are too few for a threshold
    s2 = res["stages"]["stage2"]
    assert (s2["val_macro_f1"] + s2["test_macro_f1"]) / 2 > 0.6


@pytest.mark.parametrize("gnn", ["rgcn", "rgat"])
def test_embed_exports_every_type_with_learnable_inputs(gnn, request, tmp_path):
    """Layer-wise full-graph inference over a graph with a text-less type and two LMs, for
    each GNN encoder."""
    import re

    import numpy as np
    import pyarrow.parquet as pq

    run = (request.getfixturevalue("ec_run")[0] / "ec" / "run" if gnn == "rgcn" else
           request.getfixturevalue("ec_rgat_run")[0])
    out = tmp_path / "emb"
    proc = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.embed", "--config",
                           str(run / "config.yaml"), "--checkpoint",
                           str(run / "stage3"), "--out", str(out),
                           "--verify", "40", "--batch-size", "9"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    diff = float(re.search(r"GNN output = (\S+)", proc.stdout).group(1))
    assert diff < 1e-4
    for nt, n in (("question", 40), ("answer", 80), ("tag", 6), ("user", 8)):
        emb = pq.read_table(out / "embeddings" / nt).to_pandas()
        assert len(emb) == n and emb["id"].is_unique and {len(e) for e in emb["emb"]} == {16}
        assert np.isfinite(np.stack(emb["emb"])).all()
    assert not (out / "predictions").exists()  # predictions are for node classification
    assert (out / "lm").is_dir() and (out / "lm_tag").is_dir()
    # each LM from the stage's own fine-tuned folder (the tag type's own LM too)
    s3 = run / "stage3"
    assert f"shared={s3 / 'lm'}, own_tag={s3 / 'lm_tag'}" in proc.stdout


@pytest.fixture(scope="module")
def lp_run(tmp_path_factory, tiny_hetero_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("hetero_lp")
    res, out = _run(root, "lp", tiny_hetero_dir, tiny_bert_dir,
                    {"kind": "link_prediction", "target_etype": "question__tagged__tag",
                     "num_negatives": 3, "eval_negatives": 3})
    return root, res, out


def test_link_prediction_all_stages(lp_run):
    root, res, out = lp_run
    meta = json.loads((root / "lp" / "parts" / "lmgnn_meta.json").read_text())
    held = meta["holdout"]["question__tagged__tag"]
    assert held["val"] > 0 and held["test"] > 0 and held["num_negatives"] == 3
    for name in ("baseline", "stage2", "stage3"):
        st = res["stages"][name]
        for split in ("val", "test"):
            assert st[f"{split}_num_edges"] == held[split]  # every held-out edge ranked once
            assert 0.0 < st[f"{split}_hits@1"] <= st[f"{split}_mrr"] <= 1.0
            assert st[f"{split}_hits@10"] == 1.0  # 3 negatives: every rank is <= 4
    # random scores give MRR ~ (1 + 1/2 + 1/3 + 1/4) / 4 = 0.52 against 3 negatives
    assert res["stages"]["stage2"]["test_mrr"] > 0.6
    assert "[pipeline] partitioning" in out.stdout and "held out" in out.stdout


def test_link_prediction_stage3_with_uniform_negatives(lp_run, tmp_path):
    """The uniform sampler (k fresh nodes per positive) in a real stage 3, from the same
    stage-1/2 checkpoints (joint sampling is what the main run used)."""
    import shutil

    root, first, _ = lp_run
    run = tmp_path / "run"
    for stage in ("baseline", "stage1", "stage2"):
        shutil.copytree(root / "lp" / "run" / stage, run / stage)
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose", "--config",
                          str(root / "lp.yaml"), f"output_dir={run}",
                          "task.negative_sampler=uniform", "stage3.max_steps=4",
                          "stage3.refresh_batch_size=0", "stage3.inference_source=encode"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "[stage1] step" not in out.stdout and "[stage3] step" in out.stdout
    st = json.loads((run / "results.json").read_text())["stages"]["stage3"]
    assert all(math.isfinite(x) for x in st["losses"]) and len(st["losses"]) == 4
    assert 0.0 < st["test_mrr"] <= 1.0


def test_node_classification_on_heterogeneous_graph(tmp_path, tiny_hetero_dir, tiny_bert_dir):
    res, _ = _run(tmp_path, "nc", tiny_hetero_dir, tiny_bert_dir,
                  {"kind": "node_classification", "target_ntype": "question"},
                  stage3={"max_steps": 6, "batch_size": 4, "lm_train_nodes": 6,
                          "trainable_policy": "degree", "lm_lr": 1e-4, "gnn_lr": 1e-3})
    st = res["stages"]["stage3"]
    assert set(st) >= {"val_acc", "val_macro_f1", "test_acc", "test_macro_f1", "test_f1_per_class"}
    # the class words are in the text; 10 val + 10 test questions, chance is 0.5
    s2 = res["stages"]["stage2"]
    assert (s2["val_acc"] + s2["test_acc"]) / 2 > 0.65
    # with-grad nodes were chosen over the LM types (question, answer, tag), never users
    assert 0 < st["lm_encodings"]["with_grad"] <= 2 * 6 * 6
