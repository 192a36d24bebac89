"""Typed config (YAML + overrides) and atomic stage checkpoints."""
from __future__ import annotations

import json

import pytest

from lmgnn_dist.run import checkpoint as ckpt
from lmgnn_dist.config import ConfigError, RunConfig, dump_config, load_config


def test_demo_yaml_loads_with_overrides():
    cfg = load_config("examples/cora/pipeline.yaml",
                      ["stage3.epochs=0.5", "model.fanouts=[3, 4]", "stage1.lm_lr=1e-4"])
    assert isinstance(cfg, RunConfig)
    assert cfg.stage3.epochs == 0.5 and cfg.model.fanouts == [3, 4]
    assert cfg.stages == [2, 3] and cfg.stage1.objective == "task" and cfg.stage3.refit_gnn
    assert cfg.stage1.lm_lr == pytest.approx(1e-4) and isinstance(cfg.stage1.lm_lr, float)
    assert cfg.data.tag_path == "examples/cora/tag" and cfg.launch.debug_local == 2


def test_task_files_start_from_a_base(tmp_path):
    cfg = load_config("examples/stackexchange/lp.yaml", ["stage3.max_steps=3"])
    assert cfg.task.kind == "link_prediction" and cfg.data.part_dir == "work/stackexchange/parts_lp"
    assert cfg.data.tag_path == "examples/stackexchange/tag"  # from pipeline.yaml
    assert cfg.model.encoders == {"comment": "embedding", "user": "embedding"}
    assert cfg.stage3.max_steps == 3 and cfg.stage3.lm_train_nodes == 16
    (tmp_path / "a.yaml").write_text("base: b.yaml\nseed: 1\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="form a cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_config_round_trip(tmp_path):
    cfg = load_config(None, ["seed=3", "stage2.epochs=2"])
    dump_config(cfg, tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == cfg


@pytest.mark.parametrize("overrides,message", [
    (["stage9.x=1"], r"unknown key\(s\) \['stage9'\]"),
    (["stage1.max_step=1"], r"stage1: unknown key\(s\) \['max_step'\]"),
    (["stage1.max_steps=ten"], r"stage1.max_steps: expected int, got 'ten'"),
    (["model.fanouts=[5]"], r"model.num_layers=2 but model.fanouts has 1 entries"),
    (["stage3.inference_source=disk"], r"inference_source must be 'cache' or 'encode'"),
    (["stages=[3, 1]"], r"stages must be an increasing subset"),
    (["stage1.num_negatives=9", "stage1.batch_size=4"], r"num_negatives \(k\) must be <="),
    (["nonsense"], r"must look like section.key=value"),
])
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_checkpoint_written_atomically(tmp_path):
    def write_files(d):
        (d / "gnn.pt").write_bytes(b"weights")

    final = ckpt.write_stage(str(tmp_path), "stage2", {"val_acc": 0.5}, write_files)
    assert ckpt.is_complete(str(tmp_path), "stage2")
    assert (final / "gnn.pt").read_bytes() == b"weights"

    def crash(d):
        (d / "gnn.pt").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        ckpt.write_stage(str(tmp_path), "stage2", {"val_acc": 0.9}, crash)
    # the old complete checkpoint is untouched, no temp folder is left
    assert ckpt.load_metrics(str(tmp_path), "stage2") == {"val_acc": 0.5}
    assert (final / "gnn.pt").read_bytes() == b"weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage2"]
    ckpt.write_json_atomic(str(tmp_path / "r.json"), {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}
