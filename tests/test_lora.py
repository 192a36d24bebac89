"""``model.lora``: LoRA adapters (PEFT) on the LMs the training stages fine-tune."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from run_helpers import held_out_acc, tiny_config

from lmgnn_dist.config import ConfigError, LoraSettings, load_config
from lmgnn_dist.model.joint import NodeLMs
from lmgnn_dist.model.lm import LMEncoder

LORA = LoraSettings(rank=4, alpha=8.0, dropout=0.0)


def _ids():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (5, 12), generator=g)
    ids[:, 0] = 101
    ids[3, 7:] = 0  # a padded row
    return ids


def _state(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_adapted_lm_starts_as_loaded_and_trains_only_the_adapters(tiny_bert_dir):
    ids = _ids()
    plain = LMEncoder(str(tiny_bert_dir), 0, pooling="mean")
    lora = LMEncoder(str(tiny_bert_dir), 0, pooling="mean", lora=LORA)
    plain.set_dropout(False)
    lora.set_dropout(False)
    # B = 0 at the start: the adapted LM computes exactly what the loaded one does
    assert torch.equal(plain(ids), lora(ids))
    trained = {n for n, p in lora.named_parameters() if p.requires_grad}
    # 2 layers x {query, value} x {A, B}; nothing else trains
    assert len(trained) == 8 and all(".lora_A." in n or ".lora_B." in n for n in trained)
    assert all(".query." in n or ".value." in n for n in trained)
    assert NodeLMs({"shared": lora}, {"paper": "shared"}).lora() == {
        "shared": {"rank": 4, "trainable": 2 * 2 * (4 * 32 + 32 * 4),
                   "total": sum(p.numel() for p in plain.parameters()) + 2 * 2 * 256}}
    assert NodeLMs({"shared": plain}, {"paper": "shared"}).lora() == {}
    lora.set_dropout(True)
    lora(ids).pow(2).sum().backward()
    assert all((p.grad is not None) == p.requires_grad for p in lora.parameters())


def test_adapters_train_under_gradient_checkpointing(tiny_bert_dir):
    """Checkpointed blocks over frozen embeddings still pass the gradient to the adapters
    (the embeddings' output is made to require grad), equal to the plain backward's."""
    ids = _ids()
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the same adapter initialisation both times
        lm = LMEncoder(str(tiny_bert_dir), 0, pooling="mean", lora=LORA,
                       gradient_checkpointing=checkpointing)
        lm.set_dropout(False)
        lm(ids).pow(2).sum().backward()
        grads.append({n: p.grad for n, p in lm.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == 8
    for name, g in grads[0].items():
        assert g is not None and torch.allclose(g, grads[1][name], atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads[1].values())


def test_saved_lm_is_the_merged_plain_model(tiny_bert_dir, tmp_path):
    ids = _ids()
    lora = LMEncoder(str(tiny_bert_dir), 0, pooling="mean", lora=LORA)
    opt = torch.optim.AdamW([p for p in lora.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        lora(ids).pow(2).sum().backward()
        opt.step()
    lora.set_dropout(False)
    want = lora(ids).detach()
    lora.save_pretrained(str(tmp_path / "lm"))
    saved, start = _state(tmp_path / "lm"), _state(tiny_bert_dir)
    assert set(saved) == set(start)  # a plain BertModel: no adapter tensors, pooler kept
    changed = {k for k in start if not torch.equal(saved[k], start[k])}
    # merging touched exactly the adapted weights (biases and the rest are the loaded ones)
    assert changed == {f"encoder.layer.{i}.attention.self.{m}.weight"
                       for i in range(2) for m in ("query", "value")}
    again = LMEncoder(str(tmp_path / "lm"), 0, pooling="auto")
    again.set_dropout(False)
    assert again.lora_rank == 0 and str(again.pooling) == "mean"
    assert torch.allclose(again(ids), want, atol=1e-5)
    # the cache's weights key sees the adapters merged: the reloaded LM has the same key
    key = NodeLMs({"s": lora}, {"paper": "s"}).weights_key()
    assert NodeLMs({"s": again}, {"paper": "s"}).weights_key() == key
    assert NodeLMs({"s": LMEncoder(str(tiny_bert_dir), 0, pooling="mean")},
                   {"paper": "s"}).weights_key() != key
    lora.train(True)
    assert lora.lm.training  # saving copied the model: the trained one keeps its adapters
    assert any(".lora_A." in n for n, _ in lora.named_parameters())


@pytest.mark.parametrize("override, line", [
    ("model.lora.rank=-1", "model.lora.rank must be >= 0, got -1"),
    ("model.lora.alpha=0", "model.lora.alpha must be > 0.0, got 0"),
    ("model.lora.dropout=1.0", "model.lora.dropout must be < 1.0, got 1.0"),
    ("model.lora.ranks=8", "model.lora: unknown key(s) ['ranks']; known: ['alpha', 'dropout', "
                           "'rank', 'target_modules']"),
    ("model.lora.target_modules=query", "model.lora.target_modules: expected a list, got "
                                        "'query'"),
])
def test_bad_lora_settings_are_one_line_naming_the_key(override, line):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == f"<overrides>: {line}"


def test_missing_target_modules_are_refused_before_start(tiny_bert_dir):
    """A ``target_modules`` name the LM does not have -- even beside one it has, which PEFT
    alone would accept, adapting that one only -- or a module PEFT cannot adapt is one line
    naming the key and the LM, from the driver's checks (no weights loaded), not PEFT's error
    from inside a trainer; names it has (PEFT's suffix match) pass, and with LoRA off nothing
    is asked."""
    from lmgnn_dist.drivers.prepare import check_model_paths

    def cfg(*overrides):
        return load_config(None, [f"model.lm={tiny_bert_dir}", *overrides])

    with pytest.raises(ConfigError) as info:
        check_model_paths(cfg("model.lora.rank=4", "model.lora.target_modules=[query, qurey]"))
    assert str(info.value) == (
        f"model.lora.target_modules=['query', 'qurey'] for model.lm ({tiny_bert_dir}): "
        "no module named ['qurey'] (or ending in '.' + name) in BertModel")
    with pytest.raises(ConfigError) as info:  # matched, but not a layer PEFT adapts
        check_model_paths(cfg("model.lora.rank=4", "model.lora.target_modules=[encoder]"))
    assert str(info.value).startswith(
        f"model.lora.target_modules=['encoder'] for model.lm ({tiny_bert_dir}): Target module ")
    check_model_paths(cfg("model.lora.rank=4", "model.lora.target_modules=[query, key, dense]"))
    check_model_paths(cfg("model.lora.rank=4"))  # PEFT's default for BERT
    check_model_paths(cfg("model.lora.rank=0", "model.lora.target_modules=[qurey]"))


def test_lora_is_off_by_default():
    assert load_config(None, []).model.lora == LoraSettings(rank=0)
    assert load_config(None, ["model.lora.rank=8", "model.lora.target_modules=[query, key]"]
                       ).model.lora == LoraSettings(rank=8, target_modules=["query", "key"])


def test_stages_fine_tune_through_adapters(tmp_path, tiny_tag_dir, tiny_bert_dir):
    """Stage 1 (task) and stage 3 with ``model.lora.rank=4``: each saved LM differs from the
    one its stage started from in the adapted weights only (query, value), stage 2 reads
    stage 1's merged LM, and the stages record their adapters."""
    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir, baseline=False, stages=[1, 2, 3])
    cfg["model"]["lora"] = {"rank": 4, "alpha": 8.0}
    cfg["stage1"].update(objective="task", max_steps=8, batch_size=4, lm_lr=1e-2,
                         decoder_lr=1e-2, eval_every=4)
    cfg["stage3"].update(max_steps=4, lm_lr=1e-2)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
                          str(path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = tmp_path / "run"
    st = json.loads((run / "results.json").read_text())["stages"]
    adapted = {f"encoder.layer.{i}.attention.self.{m}.weight"
               for i in range(2) for m in ("query", "value")}
    s1, s3, start = _state(run / "stage1" / "lm"), _state(run / "stage3" / "lm"), \
        _state(tiny_bert_dir)
    for before, after in ((start, s1), (s1, s3)):
        assert set(after) == set(before)
        assert {k for k in before if not torch.equal(after[k], before[k])} == adapted
    lora = {"rank": 4, "trainable": 2 * 2 * (4 * 32 + 32 * 4)}
    for name in ("stage1", "stage3"):
        assert {k: v for k, v in st[name]["lora"]["shared"].items() if k != "total"} == lora
    assert "lora" not in st["stage2"] and st["stage2"]["lm"] == str(run / "stage1" / "lm")
    assert held_out_acc(st["stage2"]) > 0.5
