"""Bad input to the drivers that only a run can meet (issue 23): a TAG whose targets cannot
train or be selected, a missing or unreadable TAG folder, a config naming no machines, a Ray
cluster that does not answer or cannot hold a stage. Each is one ``error:`` line naming the
file / column / key at fault, exit code 2, before anything starts: nothing is written (the
test folder and the TAG are hashed before and after) and no job is launched."""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pytest
import yaml

from bad_input_helpers import assert_one_line_error, snapshot, write_raw_tag
from run_helpers import tiny_config, tree_hash

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


def _config(root, tag, bert) -> str:
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, tag, bert)))
    return str(path)


def _refused(main, argv, capsys, *folders) -> str:
    """Run a driver's ``main(argv)`` in this process; it must exit 2 with one ``error:``
    line and leave ``folders`` byte for byte (and folder for folder) as they were."""
    before = [tree_hash(f) for f in folders]
    rc = main(argv)
    line = assert_one_line_error(rc, capsys.readouterr().err)
    assert [tree_hash(f) for f in folders] == before, "something was written"
    return line


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
    cfg = _config(tmp_path, tag, tiny_bert_dir)
    line = _refused(main, ["--config", cfg, *overrides], capsys, tmp_path)
    assert line == "error: " + want.format(tag=tag, nodes=tag / "nodes" / "paper.parquet",
                                           edges=tag / "edges" / "paper__cites__paper.parquet")


def test_targets_are_checked_only_when_a_planned_stage_trains_on_the_task(tmp_path,
                                                                          tiny_bert_dir):
    """Stage 1 with link prediction over all relations never reads the task's targets."""
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.prepare import check_inputs
    from partition.task_check import TaskSchemaError

    tag = _tag(tmp_path / "tag", nodes={"split": ["test"] * 8})
    cfg = _config(tmp_path, tag, tiny_bert_dir)
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

    cfg = _config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    nope = tmp_path / "nope"
    for main in (pipeline.main, ray_pipeline.main):
        line = _refused(main, ["--config", cfg, f"data.tag_path={nope}"], capsys, tmp_path)
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
    line = _refused(main, ["--config", _config(work, tag, tiny_bert_dir)], capsys, work)
    assert line == (f"error: {tag / 'nodes' / 'loop.parquet'}: cannot read it (Too many levels "
                    "of symbolic links)")
    assert snapshot(tag) == files


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_config_file_is_refused_by_the_drivers(text, tmp_path, capsys, no_launch):
    from lmgnn_dist.drivers import pipeline, ray_pipeline

    path = tmp_path / "run.yaml"
    path.write_text(text)
    for main in (pipeline.main, ray_pipeline.main):
        line = _refused(main, ["--config", str(path)], capsys, tmp_path)
        assert line == f"error: {path}: empty config (no keys)"
    path.write_bytes(b"\xff\xfeo\x00u\x00t\x00")  # UTF-16: before, a bare UnicodeDecodeError
    line = _refused(pipeline.main, ["--config", str(path)], capsys, tmp_path)
    assert line == (f"error: {path}: not a UTF-8 text file (byte 0xff at offset 0); a config "
                    "is YAML text")


def test_a_config_naming_no_machines_is_refused_before_partitioning(tmp_path, tiny_tag_dir,
                                                                    tiny_bert_dir, capsys,
                                                                    no_launch):
    """Before: "error: no ip-config given", naming no key, after the whole partitioning."""
    from lmgnn_dist.drivers.pipeline import main

    cfg = _config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    line = _refused(main, ["--config", cfg, "launch.debug_local=0"], capsys, tmp_path,
                    tiny_tag_dir)
    assert line == ("error: launch.debug_local=0 and launch.ip_config is empty: give "
                    "launch.debug_local=N (N loopback machines on this host) or "
                    "launch.ip_config=FILE (one 'IP [PORT]' line per machine)")
    ips = tmp_path / "ips.txt"
    ips.write_text("10.0.0.1\n10.0.0.2\n10.0.0.3\n")
    line = _refused(main, ["--config", cfg, "launch.debug_local=0", f"launch.ip_config={ips}"],
                    capsys, tmp_path)
    assert line == (f"error: launch.ip_config={ips} lists 3 machines but data.num_parts=2: one "
                    "partition per machine")
    line = _refused(main, ["--config", cfg, "launch.debug_local=0",
                           f"launch.ip_config={tmp_path / 'none.txt'}"], capsys, tmp_path)
    assert line == f"error: launch.ip_config: {tmp_path / 'none.txt'}: ip-config not found"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_where_nothing_answers_is_one_line_in_seconds(tmp_path, tiny_tag_dir,
                                                                    tiny_bert_dir, capsys):
    """Before: Ray's "Failed to connect to GCS" for minutes, SIGTERM unanswered meanwhile."""
    import ray

    from lmgnn_dist.drivers.ray_pipeline import main

    cfg = _config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    port = _free_port()
    t0 = time.time()
    line = _refused(main, ["--config", cfg, "--address", f"127.0.0.1:{port}"], capsys, tmp_path)
    assert line == (f"error: --address 127.0.0.1:{port}: no Ray cluster answers there "
                    "(Connection refused); start one there (ray start --head --port PORT), or "
                    "leave --address out to start a local Ray instance (RAY_ADDRESS unset)")
    with socket.socket() as listener:  # something that is not Ray listens there
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        addr = f"127.0.0.1:{listener.getsockname()[1]}"
        line = _refused(main, ["--config", cfg, "--address", addr], capsys, tmp_path)
    assert line == (f"error: --address {addr}: something listens there but does not answer as "
                    "a Ray cluster (no gRPC handshake within 3s); give the head node's GCS "
                    "port (ray start --head prints it)")
    assert time.time() - t0 < 20 and not ray.is_initialized()


def test_sigterm_ends_the_ray_driver_while_it_connects(tmp_path, tiny_tag_dir, tiny_bert_dir):
    """A gRPC server that is not Ray's GCS passes the handshake; ``ray.init`` then retries
    forever in C++, where Python runs no signal handler (before: SIGTERM went unanswered)."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    log = tmp_path / "driver.log"
    cmd = [sys.executable, "-m", "lmgnn_dist.drivers.ray_pipeline", "--config",
           _config(tmp_path, tiny_tag_dir, tiny_bert_dir), "--address", f"127.0.0.1:{port}"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while ("Connecting to existing Ray cluster" not in log.read_text()
               and proc.poll() is None and time.time() < deadline):
            time.sleep(0.2)
        time.sleep(2)  # inside ray.init's retries
        assert proc.poll() is None, log.read_text()[-2000:]
        t0 = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 128 + signal.SIGTERM
        assert time.time() - t0 < 5
        assert "[ray-pipeline] SIGTERM while connecting to Ray: exiting" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop(0)


def test_a_connect_that_never_ends_is_ended_with_one_line():
    code = ("import time\nfrom lmgnn_dist.drivers.ray_connect import _signals_end_at_once\n"
            "with _signals_end_at_once('--address 10.0.0.9:6379', deadline_s=1):\n"
            "    time.sleep(30)\n")
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and time.time() - t0 < 20
    assert proc.stderr.splitlines() == [
        "error: --address 10.0.0.9:6379: Ray did not connect within 1s; give the head node's "
        "GCS port (ray start --head prints it)"]


@pytest.mark.parametrize("per, parts, strategy, nodes, fits", [
    (None, 2, "SPREAD", [2], True),  # null: num_trainers x omp_threads = 1 CPU each
    (64, 2, "SPREAD", [2], False),
    (2, 2, "SPREAD", [3, 3], True),
    (2, 2, "PACK", [3, 1], False),  # a bundle lives on one node: 3 + 1 CPUs hold one
    (2, 2, "STRICT_SPREAD", [8], False),
    (2, 2, "STRICT_SPREAD", [2, 2], True),
    (2, 2, "STRICT_PACK", [2, 2], False),
    (2, 2, "STRICT_PACK", [4], True),
    (0.5, 4, "SPREAD", [1, 1], True),
])
def test_placement_problem_per_strategy(per, parts, strategy, nodes, fits):
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.ray_connect import placement_problem

    cfg = load_config(None, [f"launch.ray_cpus_per_machine={'null' if per is None else per}",
                             f"data.num_parts={parts}", f"launch.debug_local={parts}",
                             f"launch.ray_placement_strategy={strategy}"])
    problem = placement_problem(cfg, nodes)
    assert (problem is None) == fits, problem
    if not fits:
        assert problem.startswith(f"launch.ray_cpus_per_machine={per:g}: a stage's job needs "
                                  f"data.num_parts={parts} bundles of {per:g} CPUs ({strategy})")


def test_more_cpus_per_machine_than_the_cluster_has_is_refused_after_connecting(
        tmp_path, tiny_tag_dir, tiny_bert_dir):
    """Before: refused only after the placement timeout (300 s), after partitioning."""
    cfg = _config(tmp_path, tiny_tag_dir, tiny_bert_dir)
    before = tree_hash(tmp_path)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.ray_pipeline", "--config",
                           cfg, "--local-cpus", "2", "launch.ray_cpus_per_machine=64"],
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and errors == [
        "error: launch.ray_cpus_per_machine=64: a stage's job needs data.num_parts=2 bundles "
        "of 64 CPUs (SPREAD), but the Ray cluster has 2 CPUs on 1 node(s) (largest: 2); lower "
        "launch.ray_cpus_per_machine or add nodes"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and time.time() - t0 < 60
    assert tree_hash(tmp_path) == before  # not partitioned, no run folder
