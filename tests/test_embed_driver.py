"""lmgnn-embed's checks before anything starts: each bad checkpoint is one line naming the
file, exit 2, no process started, nothing written (run folder hashed before/after); and the
job module refuses to run outside a job."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch
import yaml
from run_helpers import tiny_config, tree_hash


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory, tiny_tag_dir, tiny_bert_dir):
    """A partitioned tiny run with a hand-made stage3 checkpoint (a head of the config's
    shapes), no training job."""
    from lmgnn_dist.trainer.builders import NodeInputEncoders, build_task_model
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.embed import GraphSchema
    from lmgnn_dist.drivers.prepare import prepare_run
    from lmgnn_dist.tasks import make_task

    root = tmp_path_factory.mktemp("embed_driver")
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, tiny_tag_dir, tiny_bert_dir)))
    cfg = load_config(str(path), [])
    _, meta, _ = prepare_run(cfg)
    run = root / "run"

    def head(hidden):
        c = load_config(str(path), [f"model.hidden_size={hidden}"])
        schema = GraphSchema.from_part_config(meta["part_config"])
        NodeInputEncoders.from_config(c.model, meta)
        return build_task_model(c.model, make_task(c, schema, meta), schema.canonical_etypes,
                                32, c.seed)

    for name, hidden in (("stage3", 16), ("stage2", 8)):
        (run / name).mkdir()
        torch.save(head(hidden).state_dict(), run / name / "gnn.pt")
        (run / name / "metrics.json").write_text("{}")
    (run / "notastage").mkdir()
    (run / "lmonly").mkdir()  # complete, but a stage without a GNN (stage 1)
    (run / "lmonly" / "metrics.json").write_text("{}")
    (run / "half").mkdir()
    data = (run / "stage3" / "gnn.pt").read_bytes()
    (run / "half" / "gnn.pt").write_bytes(data[: len(data) // 2])
    (run / "half" / "metrics.json").write_text("{}")
    return run


@pytest.mark.parametrize("stage, message", [
    ("stage9", "stage9: no such stage checkpoint folder"),
    ("notastage", "notastage: not a complete stage checkpoint (no metrics.json"),
    ("half", "half/gnn.pt: cannot be loaded (half-written or corrupt?)"),
    ("lmonly", "lmonly/gnn.pt: not found; the checkpoint must be a stage that trained a GNN"),
    ("stage2", "stage2/gnn.pt: does not fit the model the config builds"),
])
def test_bad_checkpoint_is_one_line_and_starts_nothing(fake_run, tmp_path, capsys,
                                                       monkeypatch, stage, message):
    import launch.api
    from lmgnn_dist.drivers.embed import main

    monkeypatch.setattr(launch.api, "launch", lambda *a, **kw: pytest.fail("a job started"))
    before = tree_hash(fake_run)
    out = tmp_path / "emb"
    t0 = time.time()
    rc = main(["--config", str(fake_run / "config.yaml"), "--checkpoint",
               str(fake_run / stage), "--out", str(out)])
    elapsed = time.time() - t0
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {fake_run / stage}") and message in err[0], err
    assert elapsed < 10
    assert not out.exists()  # no <out>/logs: no process ran, nothing written
    assert tree_hash(fake_run) == before


def test_out_must_not_be_the_run_or_the_stage(fake_run, capsys, monkeypatch):
    import launch.api
    from lmgnn_dist.drivers.embed import main

    monkeypatch.setattr(launch.api, "launch", lambda *a, **kw: pytest.fail("a job started"))
    for out in (fake_run, fake_run / "stage3" / "x"):
        rc = main(["--config", str(fake_run / "config.yaml"), "--checkpoint",
                   str(fake_run / "stage3"), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "--out must not be the run folder" in err[0]


def test_a_config_naming_no_machines_is_refused_before_opening_the_checkpoint(
        fake_run, tmp_path, capsys, monkeypatch):
    import launch.api
    from lmgnn_dist.drivers.embed import main

    monkeypatch.setattr(launch.api, "launch", lambda *a, **kw: pytest.fail("a job started"))
    before = tree_hash(fake_run)
    rc = main(["--config", str(fake_run / "config.yaml"), "--checkpoint",
               str(fake_run / "stage3"), "--out", str(tmp_path / "emb"), "launch.debug_local=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [
        "error: launch.debug_local=0 and launch.ip_config is empty: give launch.debug_local=N "
        "(N loopback machines on this host) or launch.ip_config=FILE (one 'IP [PORT]' line "
        "per machine)"]
    assert not (tmp_path / "emb").exists() and tree_hash(fake_run) == before


def test_a_good_checkpoint_reaches_the_launch_with_out_as_workspace(fake_run, tmp_path,
                                                                   monkeypatch):
    import launch.api
    from lmgnn_dist.drivers.embed import main

    seen = []
    monkeypatch.setattr(launch.api, "launch", lambda spec, cmd: seen.append((spec, cmd)) or 0)
    out = tmp_path / "emb"
    assert main(["--config", str(fake_run / "config.yaml"), "--checkpoint",
                 str(fake_run / "stage3"), "--out", str(out), "--verify", "5"]) == 0
    (spec, cmd), = seen
    assert spec.workspace == str(out) and spec.log_dir == str(out / "logs") and spec.quiet
    assert cmd[1:3] == ["-m", "lmgnn_dist.jobs.embed"] and cmd[-1] == f"output_dir={out}"
    assert cmd[cmd.index("--verify") + 1] == "5"


def test_the_job_module_started_by_hand_says_to_use_the_driver(fake_run, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("DGL_")}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "lmgnn_dist.jobs.embed", "--config",
                           str(fake_run / "config.yaml"), "--checkpoint",
                           str(fake_run / "stage3"), "--out", str(tmp_path / "emb")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "start the export with lmgnn-embed" in err[0], err
    assert not (tmp_path / "emb").exists() and time.time() - t0 < 60


def test_export_chunks_are_keyed_by_what_made_them(tmp_path):
    """A rerun of one export reuses its LM chunks; another checkpoint's weights (or pooling,
    which is part of the weights key), precision, sparse attention or partitions into the same
    --out get their own chunk folder (before: one ``lm_chunks/`` reused whatever was there)."""
    from lmgnn_dist.jobs.embed import chunk_store_of

    fp = {"files": {"nodes/paper.parquet": {"size": 3, "sha256": "ab", "mtime_ns": 1}},
          "options": {"max_seq_len": 16}}
    sparse = {"enabled": False, "block_size": 32}
    base = chunk_store_of(tmp_path, "w1", "fp32", sparse, fp)
    assert base.parent == tmp_path / "lm_chunks"
    assert chunk_store_of(tmp_path, "w1", "fp32", sparse,
                          dict(fp, files={"nodes/paper.parquet": {"size": 3, "sha256": "ab",
                                                                  "mtime_ns": 2}})) == base
    others = [chunk_store_of(tmp_path, "w2", "fp32", sparse, fp),
              chunk_store_of(tmp_path, "w1", "bf16", sparse, fp),
              chunk_store_of(tmp_path, "w1", "fp32", dict(sparse, enabled=True), fp),
              chunk_store_of(tmp_path, "w1", "fp32", sparse,
                             dict(fp, options={"max_seq_len": 32}))]
    assert len({base, *others}) == 5
