"""benchmarks/bench_graphstorm.py: the pure parts -- the TAG -> gconstruct input (split, text
transform), GraphStorm's training config, its log parsing and our side's overrides and row.
GraphStorm itself is not needed."""
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_graphstorm as bg  # noqa: E402
import graphstorm_side as gs  # noqa: E402

GS_LOG = """\
INFO:root:_node_lm_configs: [{'lm_type': 'bert', 'model_name': '/m', 'node_types': ['_N']}]
INFO:root:Part 0 | Epoch 00000 | Batch 000 | Loss: 2.0609 | Time: 8.9802
INFO:root:Epoch 0 take 16.926 seconds
INFO:root:Epoch 1 take 480.500 seconds
INFO:root:Step 2 | Best Validation accuracy: 0.3161
INFO:root:best_test_score: {'accuracy': 0.3001841620626151}
INFO:root:best_val_score: {'accuracy': 0.31608133086876156}
INFO:root:peak_GPU_mem_alloc_MB: 0.0
INFO:root:peak_RAM_mem_alloc_MB: 700.9375
"""


def test_split_ids_maps_val_to_valid_skips_unsplit_and_limits_train():
    ids, splits = [5, 6, 7, 8, 9, 10], ["train", "val", None, "test", "train", "train"]
    assert gs.split_ids(ids, splits) == {"train": [5, 9, 10], "valid": [6], "test": [8]}
    assert gs.split_ids(ids, splits, train_limit=2)["train"] == [5, 9]


def test_gconstruct_input_from_the_cora_tag_keeps_its_split(tmp_path):
    conf_path, split, classes, num_train = gs.write_gs_input(tmp_path, "/lm", tiny=False)
    t = pq.read_table(REPO / "examples/cora/tag/nodes/paper.parquet").to_pydict()
    want = {k: sorted(i for i, s in zip(t["id"], t["split"]) if s == v)
            for k, v in (("train", "train"), ("valid", "val"), ("test", "test"))}
    conf = json.loads(conf_path.read_text())
    files = conf["nodes"][0]["labels"][0]["custom_split_filenames"]
    for name, ids in want.items():  # one id per line, the TAG's split exactly
        assert sorted(int(x) for x in Path(files[name]).read_text().split()) == ids
        assert sorted(split[name]) == ids
    assert classes == 7 and num_train == len(want["train"])
    tf = conf["nodes"][0]["features"][0]
    assert tf["feature_col"] == "text" and tf["transform"] == {
        "name": "tokenize_hf", "bert_model": "/lm", "max_seq_length": bg.SAME["max_seq_len"]}
    assert conf["edges"][0]["relation"] == ["paper", "cites", "paper"]
    _, tiny, _, _ = gs.write_gs_input(tmp_path / "t", "/lm", tiny=True)
    assert len(tiny["train"]) == bg.TINY["train_nodes"] and tiny["test"] == split["test"]


def test_gs_train_config_puts_the_lm_beside_gsf_with_the_same_hyperparameters():
    c = gs.gs_train_config("/lm", 7)
    assert c["lm_model"]["node_lm_models"][0]["model_name"] == "/lm"
    assert c["lm_model"]["node_lm_models"][0]["node_types"] == ["_N"]
    assert "lm_model" not in c["gsf"]  # there GraphStorm silently trains without the LM
    h, g = c["gsf"]["hyperparam"], c["gsf"]["gnn"]
    assert (h["batch_size"], h["lm_train_nodes"], h["lr"], h["lm_tune_lr"]) == (64, 16, 1e-3, 5e-5)
    assert (h["num_epochs"], h["freeze_lm_encoder_epochs"]) == (1, 0)
    assert g["fanout"] == "10,10" and g["num_layers"] == 2
    assert c["gsf"]["node_classification"]["target_ntype"] == "_N"
    h = gs.gs_train_config("/lm", 7, warmup_epochs=3)["gsf"]["hyperparam"]
    assert (h["num_epochs"], h["freeze_lm_encoder_epochs"]) == (4, 3)


def test_parse_gs_log():
    r = gs.parse_gs_log(GS_LOG)
    assert r["epoch_s"] == [16.926, 480.5] and r["lm"]
    assert r["best_val"] == pytest.approx(0.31608133) and r["best_test"] == pytest.approx(0.30018418)
    assert r["rank0_maxrss_mb"] == 700.9375
    r = gs.parse_gs_log(GS_LOG.replace("_node_lm_configs", "_node_feat_name"))
    assert not r["lm"]
    assert gs.parse_gs_log("nothing") == {"epoch_s": [], "lm": False}


def test_ours_overrides_carry_the_same_settings(tmp_path):
    o = bg.ours_overrides("bf16", False, tmp_path / "ours_bf16")
    for want in ("stages=[2,3]", "launch.precision=bf16", "model.fanouts=[10,10]",
                 "stage3.batch_size=64", "stage3.lm_train_nodes=16", "stage3.lm_lr=5e-05",
                 "stage3.gnn_lr=0.001", "data.max_seq_len=128", "stage3.epochs=1",
                 f"data.part_dir={tmp_path / 'ours_parts'}"):
        assert want in o
    tiny = bg.ours_overrides("fp32", True, tmp_path / "x")
    assert "stage3.max_steps=2" in tiny and "data.max_seq_len=16" in tiny


def test_rows_and_table():
    m = {"train_s": 6.0, "steps": 2, "steps_per_epoch": 13, "peak_rss_mb_max_trainer": 1400.0,
         "val_acc": 0.9, "test_acc": 0.91, "head": "joint", "best_step": 0}
    ours = {**bg.ours_row(m, "fp32"), "wall_s": 1.0}
    assert ours["epoch_s"] == pytest.approx(39.0) and "stage 2" in ours["kept"]
    assert "re-fit" in bg.kept_label({**m, "head": "refit"})
    assert bg.kept_label({**m, "best_step": 13, "steps": 13}) == "joint, step 13 of 13"
    gs = {"name": "graphstorm 0.5.1 (fp32)", "epoch_s": 390.0, "steps_per_epoch": 13,
          "peak_rss_mb": None, "val": 0.8, "test": 0.81, "kept": "after 1 co-training epoch"}
    lines = bg.table([gs, ours]).splitlines()
    assert lines[2].split()[3:7] == ["30.00", "390.0", "1.00", "-"]  # s/step, s/epoch, x, RSS
    assert lines[3].split()[2:6] == ["3.00", "39.0", "10.00", "1400"]


def test_run_watched_reports_each_roles_largest_process_and_the_tree_sum(tmp_path):
    """The watched run's memory comes from launch.memory.TreeMemoryMonitor: a child that
    holds ~60 MiB with DGL_ROLE=client is the trainer peak, and the tree sum covers it."""
    code = ("import os, subprocess, sys, time; "
            "env = dict(os.environ, DGL_ROLE='client'); "
            "subprocess.run([sys.executable, '-c', "
            "'import time; b = bytearray(60 * 2**20); time.sleep(1.5)'], env=env)")
    res = gs.run_watched([sys.executable, "-c", code], tmp_path / "log.txt")
    assert res["rc"] == 0 and set(res["peak_mb"]) == {"other", "trainer"}
    assert 60 <= res["peak_mb"]["trainer"] < 200
    assert res["peak_sum_mb"] >= res["peak_mb"]["trainer"]
