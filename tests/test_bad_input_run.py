"""Bad input to the drivers that only a run can meet (issue 23): a TAG whose targets cannot
train or be selected, a missing or unreadable TAG folder, an empty config file, a config
naming no machines. Each is one ``error:`` line naming the file / column / key at fault,
exit code 2, before anything starts: nothing is written (the test folder and the TAG are
hashed before and after) and no job is launched. The Ray driver's own cases are in
``test_bad_input_ray.py``."""
from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from bad_input_helpers import driver_refuses, snapshot, write_raw_tag, write_run_config

NC: list = []
EC = ["task.kind=edge_classification", "task.target_etype=paper__cites__paper"]
LP = ["task.kind=link_prediction", "task.target_etype=paper__cites__paper"]
NODE_SPLIT = ["train"] * 4 + ["val"] * 2 + ["test"] * 2
EDGE_SPLIT = ["train"] * 3 + ["val"] * 2 + ["test"] * 2


def _tag(root, nodes=None, edges=None):
    """8 papers (2 declared classes), 7 citations (labels, splits; no classes declared),
    with the columns of ``nodes`` / ``edges`` replaced."""
    node_cols = {"id": list(range(1, 9)), "text": [f"paper {i}" for i in range(1, 9)],
                 "label": [i % 2 for i in range(8)], "split": NODE_SPLIT, **(nodes or {})}
    edge_cols = {"src": list(range(1, 8)), "dst": list(range(2, 9)),
                 "label": [i % 2 for i in range(7)], "split": EDGE_SPLIT, **(edges or {})}
    return write_raw_tag(root, {"paper": node_cols}, {"paper__cites__paper": edge_cols},
                         meta={"node_types": {"paper": {"classes": ["a", "b"]}}})


@pytest.fixture()
def no_launch(monkeypatch):
    from lmgnn_dist.drivers import pipeline, ray_pipeline

    monkeypatch.setattr(pipeline, "launch_job", lambda *a, **k: pytest.fail("a job started"))
    monkeypatch.setattr(ray_pipeline, "connect", lambda *a, **k: pytest.fail("Ray started"))


# case -> (task overrides, replaced TAG columns, the line after "error: ")
TASK_CASES = {
    "no train node": (NC, {"nodes": {"split": ["val"] * 4 + ["test"] * 4}},
                      "{nodes}: no node has split 'train' (column 'split'): nothing to train "
                      "on"),
    "no val node": (NC, {"nodes": {"split": ["train"] * 6 + ["test"] * 2}},
                    "{nodes}: no node has split 'val' (column 'split'): nothing to select the "
                    "model on (every stage keeps the model that is best on validation)"),
    "split typo": (NC, {"nodes": {"split": ["Train"] * 4 + ["val"] * 2 + ["test"] * 2}},
                   "{nodes}: column 'split' has the value 'Train' (4 nodes); expected one of "
                   "['train', 'val', 'test'] or null"),
    "every label null": (NC, {"nodes": {"label": pa.array([None] * 8, pa.int64())}},
                         "{nodes}: 4 nodes with split 'train' have no label (column 'label' is "
                         "null); every train/val/test node needs one"),
    "a val label null": (NC, {"nodes": {"label": pa.array([0, 1, 0, 1, None, 1, 0, 1],
                                                          pa.int64())}},
                         "{nodes}: 1 node with split 'val' has no label (column 'label' is "
                         "null); every train/val/test node needs one"),
    "labels beyond the declared classes": (
        NC, {"nodes": {"label": [0, 1, 0, 1, 0, 2, 0, 5]}},
        "{nodes}: 2 nodes have a label outside the 2 classes 0..1 declared in "
        "{tag}/metadata.json (column 'label'), e.g. 2 at row 5"),
    "edge classification, no train edge": (
        EC, {"edges": {"split": ["val"] * 4 + ["test"] * 3}},
        "{edges}: no edge has split 'train' (column 'split'): nothing to train on"),
    "edge classification, test labels null": (
        EC, {"edges": {"label": pa.array([0, 1, 0, 1, 0, None, None], pa.int64())}},
        "{edges}: 2 edges with split 'test' have no label (column 'label' is null); every "
        "train/val/test edge needs one"),
    "edge classification, negative label": (
        EC, {"edges": {"label": [0, 1, -3, 1, 0, 1, 0]}},
        "{edges}: 1 edge has a label outside 0..99999 (no classes declared in metadata.json) "
        "(column 'label'), e.g. -3 at row 2"),
    "link prediction, no train edge": (
        LP, {"edges": {"split": pa.array([None, None, None, "val", "val", "test", "test"])}},
        "{edges}: no edge has split 'train' (column 'split'): nothing to train on"),
    "link prediction, no val edge": (
        LP, {"edges": {"split": ["train"] * 5 + ["test"] * 2}},
        "{edges}: no edge has split 'val' (column 'split'): nothing to select the model on "
        "(every stage keeps the model that is best on validation)"),
}


@pytest.mark.parametrize("case", list(TASK_CASES))
def test_targets_that_cannot_train_or_be_selected_are_refused_before_partitioning(
        case, tmp_path, tiny_bert_dir, capsys, no_launch):
    """Before: exit 0 and a results table for a model that never trained (no train split),
    or an IndexError in a trainer after the servers started (null labels)."""
    from lmgnn_dist.drivers.pipeline import main

    overrides, cols, want = TASK_CASES[case]
    tag = _tag(tmp_path / "tag", **cols)
    cfg = write_run_config(tmp_path, tag, tiny_bert_dir)
    line = driver_refuses(main, ["--config", cfg, *overrides], capsys, tmp_path)
    assert line == "error: " + want.format(tag=tag, nodes=tag / "nodes" / "paper.parquet",
                                           edges=tag / "edges" / "paper__cites__paper.parquet")


def test_targets_are_checked_only_when_a_planned_stage_trains_on_the_task(tmp_path,
                                                                          tiny_bert_dir):
    """Stage 1 with link prediction over all relations never reads the task's targets."""
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.prepare import check_inputs
    from partition.task_check import TaskSchemaError

    tag = _tag(tmp_path / "tag", nodes={"split": ["test"] * 8})
    cfg = write_run_config(tmp_path, tag, tiny_bert_dir)
    check_inputs(load_config(cfg, ["stages=[1]", "baseline=false"]))
    for needs in (["stages=[1]", "baseline=true"], ["stages=[1]", "baseline=false",
                                                    "stage1.objective=task"], ["stages=[2]"]):
        with pytest.raises(TaskSchemaError, match="no node has split 'train'"):
            check_inputs(load_config(cfg, ["baseline=false", *needs]))


def test_a_missing_tag_folder_is_named_as_data_tag_path(tmp_path, tiny_tag_dir, tiny_bert_dir,
                                                        capsys, no_launch):
    """Before: "<tag>/nodes/paper.parquet: node_classification targets node type 'paper',
    which the TAG at <tag> does not have; known: []"."""
    from lmgnn_dist.drivers import pipeline, ray_pipeline

    cfg = write_run_config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    nope = tmp_path / "nope"
    for main in (pipeline.main, ray_pipeline.main):
        line = driver_refuses(main, ["--config", cfg, f"data.tag_path={nope}"], capsys, tmp_path)
        assert line == f"error: data.tag_path={nope}: TAG folder does not exist"


def test_a_symlink_loop_in_the_tag_is_one_line_naming_it(tmp_path, tiny_tag_dir, tiny_bert_dir,
                                                         capsys, no_launch):
    """Before: an OSError traceback from the partitions' fingerprint, after config.yaml and
    logs/ were written."""
    from lmgnn_dist.drivers.pipeline import main

    tag, work = tmp_path / "tag", tmp_path / "work"
    shutil.copytree(tiny_tag_dir, tag)
    (tag / "nodes" / "loop.parquet").symlink_to("loop.parquet")
    work.mkdir()
    files = snapshot(tag)  # the loop is no file: tree_hash cannot read it
    cfg = write_run_config(work, tag, tiny_bert_dir)
    line = driver_refuses(main, ["--config", cfg], capsys, work)
    assert line == (f"error: {tag / 'nodes' / 'loop.parquet'}: cannot read it (Too many levels "
                    "of symbolic links)")
    assert snapshot(tag) == files


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_config_file_is_refused_by_the_drivers(text, tmp_path, capsys, no_launch):
    from lmgnn_dist.drivers import pipeline, ray_pipeline

    path = tmp_path / "run.yaml"
    path.write_text(text)
    for main in (pipeline.main, ray_pipeline.main):
        line = driver_refuses(main, ["--config", str(path)], capsys, tmp_path)
        assert line == f"error: {path}: empty config (no keys)"
    path.write_bytes(b"\xff\xfeo\x00u\x00t\x00")  # UTF-16: before, a bare UnicodeDecodeError
    line = driver_refuses(pipeline.main, ["--config", str(path)], capsys, tmp_path)
    assert line == (f"error: {path}: not a UTF-8 text file (byte 0xff at offset 0); a config "
                    "is YAML text")


def test_a_config_naming_no_machines_is_refused_before_partitioning(tmp_path, tiny_tag_dir,
                                                                    tiny_bert_dir, capsys,
                                                                    no_launch):
    """Before: "error: no ip-config given", naming no key, after the whole partitioning."""
    from lmgnn_dist.drivers.pipeline import main

    cfg = write_run_config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    line = driver_refuses(main, ["--config", cfg, "launch.debug_local=0"], capsys, tmp_path,
                          tiny_tag_dir)
    assert line == ("error: launch.debug_local=0 and launch.ip_config is empty: give "
                    "launch.debug_local=N (N loopback machines on this host) or "
                    "launch.ip_config=FILE (one 'IP [PORT]' line per machine)")
    ips = tmp_path / "ips.txt"
    ips.write_text("10.0.0.1\n10.0.0.2\n10.0.0.3\n")
    line = driver_refuses(main, ["--config", cfg, "launch.debug_local=0",
                                 f"launch.ip_config={ips}"], capsys, tmp_path)
    assert line == (f"error: launch.ip_config={ips} lists 3 machines but data.num_parts=2: one "
                    "partition per machine")
    line = driver_refuses(main, ["--config", cfg, "launch.debug_local=0",
                                 f"launch.ip_config={tmp_path / 'none.txt'}"], capsys, tmp_path)
    assert line == f"error: launch.ip_config: {tmp_path / 'none.txt'}: ip-config not found"
