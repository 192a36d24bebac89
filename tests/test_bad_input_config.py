"""Bad run configs: one ConfigError line naming the file and the dotted key (issue 13)."""
from __future__ import annotations

import pytest

from lmgnn_dist.config import ConfigError, load_config

# override(s) -> the exact line (after "<overrides>: ")
CASES = {
    "lr not positive": (["stage3.lm_lr=-1"], "stage3.lm_lr must be > 0.0, got -1"),
    "lr zero": (["stage2.lr=0"], "stage2.lr must be > 0.0, got 0"),
    "batch size 0": (["stage1.batch_size=0", "stage1.num_negatives=1"],
                     "stage1.batch_size must be > 0, got 0"),
    "max steps negative": (["stage3.max_steps=-1"], "stage3.max_steps must be >= 0, got -1"),
    "epochs 0": (["stage2.epochs=0"], "stage2.epochs must be > 0, got 0"),
    "hidden size 0": (["model.hidden_size=0"], "model.hidden_size must be > 0, got 0"),
    "num layers 0": (["model.num_layers=0", "model.fanouts=[]"],
                     "model.num_layers must be > 0, got 0"),
    "fanouts length": (["model.fanouts=[5]"], "model.num_layers=2 but model.fanouts has 1 entries"),
    "fanout 0": (["model.fanouts=[0, 5]"],
                 "model.fanouts[0] must be >= 1 or -1 (all neighbours), got 0"),
    "dropout 1": (["model.dropout=1"], "model.dropout must be < 1.0, got 1"),
    "dropout negative": (["model.dropout=-0.1"], "model.dropout must be >= 0.0, got -0.1"),
    "gnn": (["model.gnn=gcn"], "model.gnn must be 'rgcn' or 'rgat', got 'gcn'"),
    "num heads 0": (["model.gnn=rgat", "model.num_heads=0"],
                    "model.num_heads must be > 0, got 0"),
    "heads do not divide hidden": (["model.gnn=rgat", "model.hidden_size=10"],
                                   "model.hidden_size=10 is not divisible by model.num_heads=4 "
                                   "(model.gnn=rgat concatenates the heads to hidden_size)"),
    "unknown model key": (["model.heads=2"], "model: unknown key(s) ['heads']; known: "
                          "['dropout', 'embedding_lr', 'encoders', 'fanouts', 'gnn', "
                          "'hidden_size', 'lm', 'lm_gradient_checkpointing', 'lora', "
                          "'num_heads', 'num_layers', 'pooling', 'sparse_attention']"),
    "pooling": (["model.pooling=max"], "model.pooling must be one of 'auto', 'cls' or 'mean', "
                "got 'max'"),
    "num parts 0": (["data.num_parts=0"], "data.num_parts must be > 0, got 0"),
    "max seq len 1": (["data.max_seq_len=1"], "data.max_seq_len must be >= 2, got 1"),
    "graph name path": (["data.graph_name=../x"], "data.graph_name must be a file name of "
                        "letters, digits, '_', '.' and '-' (at most 100, not starting with '.' "
                        "or '-'), got '../x'"),
    "part method": (["data.part_method=spectral"],
                    "data.part_method must be 'metis' or 'random', got 'spectral'"),
    "task kind": (["task.kind=regression"], "task.kind must be one of 'node_classification', "
                  "'edge_classification' or 'link_prediction', got 'regression'"),
    "eval metric": (["task.eval_metric=accuracy"], "task.eval_metric must be one of 'acc', "
                    "'macro_f1', 'mrr', 'hits@1' or 'hits@10', got 'accuracy'"),
    "policy": (["stage3.trainable_policy=all"], "stage3.trainable_policy must be one of "
               "'random', 'targets' or 'degree', got 'all'"),
    "placement": (["launch.ray_placement_strategy=spread"], "launch.ray_placement_strategy must "
                  "be one of 'SPREAD', 'STRICT_SPREAD', 'PACK' or 'STRICT_PACK', got 'spread'"),
    "precision": (["launch.precision=fp8"], "launch.precision must be one of 'fp32', 'bf16', "
                  "'fp16' or 'auto', got 'fp8'"),
    "int as string": (["stage1.max_steps='10'"], "stage1.max_steps: expected int, got '10'"),
    "bool for int": (["model.hidden_size=true"], "model.hidden_size: expected int, got True"),
    "int for bool": (["baseline=1"], "baseline: expected bool, got 1"),
    "section a value": (["model=3"], "model: expected a mapping, got 3"),
    "unknown key": (["stage1.max_step=1"], "stage1: unknown key(s) ['max_step']; known: "
                    "['batch_size', 'clip_per_group', 'cross_fit_folds', 'decoder_lr', 'epochs', "
                    "'eval_every', 'head_warmup_epochs', "
                    "'label_smoothing', 'lm_lr', 'max_grad_norm', 'max_steps', 'num_negatives', "
                    "'objective', 'patience', "
                    "'schedule', 'val_edges', 'val_negatives', 'warmup_ratio', 'weight_decay']"),
    "port": (["launch.ssh_port=70000"], "launch.ssh_port must be <= 65535, got 70000"),
    "machines vs parts": (["data.num_parts=3"],
                          "launch.debug_local=2 machines but data.num_parts=3: one partition "
                          "per machine"),
    "override not YAML": (["model.fanouts=[1,"], "override 'model.fanouts=[1,': invalid YAML "
                          "(line 1 column 4: expected the node content, but found '<stream "
                          "end>')"),
    "override duplicate key": (["model.encoders={a: x, a: y}"],
                               "override 'model.encoders={a: x, a: y}': invalid YAML (line 1 "
                               "column 8: duplicate key 'a')"),
    "override empty key": (["stage1..x=1"], "override 'stage1..x=1': empty key part in "
                           "'stage1..x'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_override_is_one_line_naming_the_key(case):
    overrides, line = CASES[case]
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    assert str(info.value) == f"<overrides>: {line}"


# file text -> the line (after "<file>: ")
FILE_CASES = {
    "duplicate key": ("stage1:\n  max_steps: 3\n  max_steps: 4\n",
                      "invalid YAML (line 3 column 3: duplicate key 'max_steps')"),
    "duplicate section": ("seed: 1\nseed: 2\n", "invalid YAML (line 2 column 1: duplicate key "
                                                "'seed')"),
    "bad indentation": ("stage1:\n  max_steps: 3\n lm_lr: 1\n",
                        "invalid YAML (line 3 column 2: expected <block end>, but found "
                        "'<block mapping start>')"),
    "list, not sections": ("- 1\n- 2\n", "expected a mapping of sections, got list"),
    "base not a name": ("base: [a.yaml]\n", "base must be a file name, got ['a.yaml']"),
    "rule in the file": ("stage3:\n  lm_lr: -1.0e-5\n", "stage3.lm_lr must be > 0.0, got "
                                                        "-1e-05"),
    # issue 23: all defaults (the Cora demo's paths) is never what a file meant
    "empty file": ("", "empty config (no keys)"),
    "only comments": ("# my run\n\n   # TODO\n", "empty config (no keys)"),
    "empty mapping": ("{}\n", "empty config (no keys)"),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_file_is_one_line_naming_file_and_key(case, tmp_path):
    text, line = FILE_CASES[case]
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: {line}"


def test_a_binary_or_folder_config_is_one_line_naming_it(tmp_path):
    """A binary file raised UnicodeDecodeError's text, naming neither file nor config."""
    path = tmp_path / "run.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == (f"{path}: not a UTF-8 text file (byte 0x89 at offset 0); a "
                               "config is YAML text")
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert str(info.value) == f"{tmp_path}: is a folder, not a config file"


def test_zero_steps_still_mean_skip_or_evaluate():
    """``stage1.max_steps=0`` skips stage 1, ``stage3.max_steps=0`` only evaluates: allowed."""
    cfg = load_config(None, ["stage1.max_steps=0", "stage3.max_steps=0", "model.fanouts=[-1, 5]"])
    assert cfg.stage1.max_steps == 0 and cfg.model.fanouts == [-1, 5]


def test_yaml_without_a_dot_in_a_float_is_a_float(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("stage1:\n  lm_lr: 1e-4\n")  # YAML 1.1 reads this as a string
    assert load_config(str(path)).stage1.lm_lr == pytest.approx(1e-4)


def test_gnn_encoder_keys_default_and_heads_matter_only_for_rgat():
    cfg = load_config(None, [])
    assert (cfg.model.gnn, cfg.model.num_heads) == ("rgcn", 4)
    # RGCN has no heads: a width the default 4 heads do not divide is fine
    assert load_config(None, ["model.hidden_size=10"]).model.hidden_size == 10
    cfg = load_config(None, ["model.gnn=rgat", "model.hidden_size=12", "model.num_heads=3"])
    assert (cfg.model.gnn, cfg.model.hidden_size, cfg.model.num_heads) == ("rgat", 12, 3)


def test_pooling_defaults_to_cls_until_measured():
    """``model.pooling``: ``cls`` by default (a default changes only by the quality
    protocol); ``auto`` and ``mean`` are accepted."""
    assert load_config(None, []).model.pooling == "cls"
    for value in ("auto", "mean", "cls"):
        assert load_config(None, [f"model.pooling={value}"]).model.pooling == value
