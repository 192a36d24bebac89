"""The stage-checkpoint reader: which LM folders a stage's LMs start from, and its checks."""
from __future__ import annotations

import pytest
import torch

from lmgnn_dist.model.joint import own_key
from lmgnn_dist.run.stage_checkpoint import CheckpointError, StageCheckpoint, check_state_dict


def _stage(run, name, folders=(), complete=True):
    d = run / name
    d.mkdir(parents=True)
    for f in folders:
        (d / f).mkdir()
    if complete:
        (d / "metrics.json").write_text("{}")
    return d


def test_every_type_with_its_own_lm_picks_the_fine_tuned_folders(tmp_path):
    """Two node types, each with its own LM (``lm_a/``, ``lm_b/``, no ``lm/``): the export
    starts from those, where the old rule (first of stage/stage1 having ``lm/``) found none and
    silently used the pre-trained models."""
    run = tmp_path / "run"
    _stage(run, "stage1", ["lm_a", "lm_b"])
    s3 = _stage(run, "stage3", ["lm_a", "lm_b"])
    paths = {own_key("a"): "pretrained-a", own_key("b"): "pretrained-b"}
    src = StageCheckpoint(s3).lm_sources(paths)
    assert src == {own_key("a"): str(s3 / "lm_a"), own_key("b"): str(s3 / "lm_b")}
    # the old rule of embed.py
    old = next((d for d in (s3, s3.parent / "stage1") if (d / "lm").exists()), None)
    assert old is None  # -> build_lms(..., None, ...): the pre-trained models


def test_stage_without_lms_starts_from_stage1_per_key(tmp_path):
    run = tmp_path / "run"
    s1 = _stage(run, "stage1", ["lm", "lm_b"])
    s2 = _stage(run, "stage2")  # a GNN stage: writes no LM
    paths = {"shared": "base", own_key("b"): "base-b", own_key("c"): "base-c"}
    assert StageCheckpoint(s2).lm_sources(paths) == {
        "shared": str(s1 / "lm"), own_key("b"): str(s1 / "lm_b"), own_key("c"): "base-c"}
    # stage 3 wrote only the shared LM: the own LM of b still comes from stage 1
    s3 = _stage(run, "stage3", ["lm"])
    assert StageCheckpoint(s3).lm_sources(paths)[own_key("b")] == str(s1 / "lm_b")
    assert StageCheckpoint(s3).lm_sources(paths)["shared"] == str(s3 / "lm")
    # the baseline runs on the configured LMs, never stage 1's
    base = _stage(run, "baseline")
    assert StageCheckpoint(base).lm_sources(paths) == paths


def test_incomplete_stage1_is_not_used(tmp_path):
    run = tmp_path / "run"
    _stage(run, "stage1", ["lm"], complete=False)
    s2 = _stage(run, "stage2")
    assert StageCheckpoint(s2).lm_sources({"shared": "base"}) == {"shared": "base"}


def test_checks_name_the_file(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"stage9: no such stage checkpoint folder"):
        StageCheckpoint(run / "stage9").check_complete()
    half = _stage(run, "stage3", complete=False)
    with pytest.raises(CheckpointError, match=r"stage3: not a complete stage checkpoint"):
        StageCheckpoint(half).check_complete()
    (half / "metrics.json").write_text("{}")
    ck = StageCheckpoint(half)
    with pytest.raises(CheckpointError, match=r"stage3/gnn.pt: not found"):
        ck.load_gnn_state()
    lin = torch.nn.Linear(4, 2)
    torch.save(lin.state_dict(), ck.gnn_path)
    data = ck.gnn_path.read_bytes()
    ck.gnn_path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"stage3/gnn.pt: cannot be loaded"):
        ck.load_gnn_state()
    torch.save(lin.state_dict(), ck.gnn_path)
    check_state_dict(ck.gnn_path, ck.load_gnn_state(), lin)
    with pytest.raises(CheckpointError, match=r"gnn.pt: does not fit .*weight: \(2, 4\) in the "
                                              r"file, \(3, 4\) in the model"):
        check_state_dict(ck.gnn_path, ck.load_gnn_state(), torch.nn.Linear(4, 3))
