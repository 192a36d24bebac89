"""Resume never mixes inputs (issue 23): a real 2-server + 2-trainer run, then the same run
folder resumed after a change to the data, the model or a stage's settings, or with
``resume: strict``. A stage is reused only when what it was trained on -- its recorded
``inputs`` (config sections, partitions, code) -- is what the config asks for now."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from run_helpers import tiny_config, tree_hash


def _run(path, *overrides):
    return subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--verbose",
                           "--config", str(path), *overrides], capture_output=True, text=True,
                          timeout=600)


def _stage_mtimes(run):
    return {s: (run / s / "metrics.json").stat().st_mtime_ns
            for s in ("stage2", "stage3") if (run / s / "metrics.json").exists()}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    root = tmp_path_factory.mktemp("resume_inputs")
    cfg = tiny_config(root, tiny_tag_dir, tiny_bert_dir, baseline=False, stages=[2, 3])
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = _run(path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return root, path


def test_stages_record_what_they_were_trained_on(first_run):
    root, _ = first_run
    s2, s3 = (json.loads((root / "run" / s / "metrics.json").read_text())
              for s in ("stage2", "stage3"))
    from lmgnn_dist.run.code_version import source_digest
    from lmgnn_dist.run.provenance import inputs_digest

    for m in (s2, s3):
        assert m["inputs"]["code"] == source_digest()
        assert m["inputs"]["config"]["data"]["max_seq_len"] == 16
        assert len(m["inputs"]["partitions"]) == 16
    assert "stage3" not in s2["inputs"]["config"] and "stage3" in s3["inputs"]["config"]
    assert s3["inputs"]["starts_from"] == {"stage2": inputs_digest(s2["inputs"])}
    assert s2["inputs"]["starts_from"] == {}  # no stage 1 in this plan: the configured LM


def test_a_stage3_setting_reruns_stage3_only(first_run):
    root, path = first_run
    run = root / "run"
    before = _stage_mtimes(run)
    out = _run(path, "stage3.lm_lr=5e-4")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert ("[pipeline] stage3 in " in out.stdout and "was trained on other inputs "
            "(stage3.lm_lr 0.0001 -> 0.0005): not reused" in out.stdout), out.stdout[-3000:]
    assert "[stage2] epoch" not in out.stdout and "[stage3] step" in out.stdout
    after = _stage_mtimes(run)
    assert after["stage2"] == before["stage2"] and after["stage3"] != before["stage3"]
    res = json.loads((run / "results.json").read_text())
    assert res["stages"]["stage3"]["inputs"]["config"]["stage3"]["lm_lr"] == 5e-4
    # one resolved config per invocation, the latest also as config.yaml
    hist = sorted(p.name for p in (run / "configs").iterdir())
    assert hist == ["001.yaml", "002.yaml"]
    assert yaml.safe_load((run / "config.yaml").read_text())["stage3"]["lm_lr"] == 5e-4
    assert yaml.safe_load((run / "configs" / "001.yaml").read_text())["stage3"]["lm_lr"] == 1e-4


def test_resume_strict_refuses_a_stale_stage_and_writes_nothing(first_run):
    root, path = first_run
    run = root / "run"
    before = tree_hash(run)
    out = _run(path, "resume=strict", "model.hidden_size=32")
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: resume: strict: stage2 in {run} was trained on other inputs "
        "(model.hidden_size 16 -> 32)"), out.stderr
    assert "[launcher]" not in out.stdout and tree_hash(run) == before


def test_a_data_change_reruns_from_the_first_changed_stage(first_run):
    """The issue's case ``data.max_seq_len 16 -> 8`` (partitions rebuilt) reused the stage-2
    checkpoint of the old partitions. Now stage 2 runs again, and so does stage 3, which
    starts from the new stage 2. (``model.hidden_size``, which made stage 3 fail on a size
    mismatch, is stale the same way: the strict test above and ``test_runplan.py``.)"""
    root, path = first_run
    run = root / "run"
    for over, said in (("data.max_seq_len=8", "data.max_seq_len 16 -> 8"),):
        out = _run(path, over)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        stale = [ln for ln in out.stdout.splitlines() if "was trained on other inputs" in ln]
        assert [ln.split(" in ")[0] for ln in stale] == ["[pipeline] stage2",
                                                         "[pipeline] stage3"], stale
        assert said in stale[0] and "stage2, which it starts from" in stale[1], stale
        assert "[stage2] epoch" in out.stdout and "[stage3] step" in out.stdout
        s2, s3 = (json.loads((run / s / "metrics.json").read_text())
                  for s in ("stage2", "stage3"))
        key, value = over.split("=")
        section, name = key.split(".")
        assert s2["inputs"]["config"][section][name] == int(value)
        assert s3["inputs"]["config"][section][name] == int(value)
