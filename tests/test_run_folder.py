"""The run folder (``output_dir``) has the partitioner's rules (issue 23): refused, with one
line and nothing written, when writing there could lose a file the project did not write;
the ``--config`` file is never written over; ``resume: false`` removes only checkpoints."""
from __future__ import annotations

import json
import os

import pytest
import yaml

from lmgnn_dist.run.folder import MARKER, RunDirError, check_run_dir, write_config
from run_helpers import tiny_config, tree_hash


@pytest.fixture
def places(tmp_path):
    tag, part = tmp_path / "tag", tmp_path / "parts"
    (tag / "nodes").mkdir(parents=True)
    (tag / "nodes" / "paper.parquet").write_bytes(b"x")
    return tmp_path, str(tag), str(part)


def _refusal(out, tag, part, config=None) -> str:
    with pytest.raises(RunDirError) as exc:
        check_run_dir(str(out), tag, part, config)
    return str(exc.value)


def test_places_that_are_not_a_run_folder_are_refused(places):
    root, tag, part = places
    (root / "notes.txt").write_text("mine")
    os.makedirs(part)
    assert _refusal("", tag, part) == ("output_dir='': empty; name the run's own folder "
                                       "(e.g. work/cora/run)")
    assert _refusal(root / "notes.txt", tag, part) == (
        f"output_dir='{root}/notes.txt': is a file, not a folder; choose another output_dir")
    assert _refusal(root / "notes.txt" / "run", tag, part) == (
        f"output_dir='{root}/notes.txt/run': {root}/notes.txt is a file, not a folder; "
        "choose another output_dir")
    assert _refusal(tag, tag, part) == (
        f"output_dir='{tag}': is the TAG folder data.tag_path={tag}; choose a folder outside it")
    assert _refusal(f"{tag}/run", tag, part).startswith(
        f"output_dir='{tag}/run': is inside the TAG folder")
    assert _refusal(root, tag, part).startswith(f"output_dir='{root}': contains the TAG folder")
    assert _refusal(part, tag, part) == (
        f"output_dir='{part}': is the partition folder data.part_dir={part}; choose another "
        "folder")
    assert _refusal(f"{part}/run", tag, part).startswith(
        f"output_dir='{part}/run': is inside the partition folder")


def test_foreign_files_are_named_and_refused(places):
    root, tag, part = places
    run = root / "run"
    (run / "stage2").mkdir(parents=True)  # a user's folder named like a stage: no metrics.json
    (run / "config.yaml").write_text("# my config\nbase: x.yaml\n")
    assert _refusal(run, tag, part) == (
        f"output_dir='{run}': holds files the project did not write (no {MARKER} marker: "
        "config.yaml, stage2); refusing to write there; choose a new or empty folder")
    (run / MARKER).write_text("{}")  # even in a marked folder, stage2/ is not a checkpoint
    (run / "config.yaml").unlink()
    assert _refusal(run, tag, part) == (
        f"output_dir='{run}': holds files the project did not write (not written by a run: "
        "stage2); refusing to write there; choose a new or empty folder")


def test_own_new_empty_legacy_folders_and_the_config_file_are_accepted(places):
    root, tag, part = places
    check_run_dir(str(root / "new" / "run"), tag, part)  # does not exist
    (root / "empty").mkdir()
    check_run_dir(str(root / "empty"), tag, part)
    legacy = root / "legacy"  # a run folder of a version before the marker
    (legacy / "stage2").mkdir(parents=True)
    (legacy / "stage2" / "metrics.json").write_text("{}")
    (legacy / "logs").mkdir()
    for f in ("config.yaml", "results.json", "ip_config_debug.txt", ".results.json.ab12.tmp"):
        (legacy / f).write_text("")
    (legacy / ".stage3.tmp-4242").mkdir()
    check_run_dir(str(legacy), tag, part)
    mine = root / "exp1"  # the --config file (and the partition folder) may sit inside
    mine.mkdir()
    (mine / "config.yaml").write_text("seed: 1\n")
    check_run_dir(str(mine), tag, str(mine / "parts"), str(mine / "config.yaml"))
    assert _refusal(mine, tag, part).endswith("(no .lmgnn-run marker: config.yaml); refusing "
                                              "to write there; choose a new or empty folder")


def test_config_history_keeps_every_invocation_and_never_writes_the_config_file(tmp_path,
                                                                                capsys):
    run = tmp_path / "run"
    first = write_config("seed: 1\n", str(run))
    second = write_config("seed: 2\n", str(run))
    assert [first, second] == [str(run / "configs" / "001.yaml"),
                               str(run / "configs" / "002.yaml")]
    assert (run / "configs" / "001.yaml").read_text() == "seed: 1\n"
    assert (run / "config.yaml").read_text() == "seed: 2\n"
    write_config("seed: 3\n", str(run), str(run / "config.yaml"))  # config.yaml is --config
    assert (run / "config.yaml").read_text() == "seed: 2\n"
    assert (run / "configs" / "003.yaml").read_text() == "seed: 3\n"
    assert "is the --config file: left as it is" in capsys.readouterr().out
    assert sorted(os.listdir(run / "configs")) == ["001.yaml", "002.yaml", "003.yaml"]


def _driver(argv):
    from lmgnn_dist.drivers.pipeline import main

    return main(argv)


def test_the_driver_refuses_before_writing_anything(tmp_path, tiny_tag_dir, tiny_bert_dir,
                                                    capsys):
    """The issue's data-loss cases through ``lmgnn-run``: exit 2, one line, the folders
    byte-for-byte as they were, no partitions made."""
    user = tmp_path / "exp1"
    user.mkdir()
    (user / "config.yaml").write_text("# notes\n")
    (user / "thesis.tex").write_text("mine")
    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir, output_dir=str(user))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cases = {
        "user files": ([], f"holds files the project did not write (no {MARKER} marker: "
                           "config.yaml, thesis.tex)"),
        "empty": (["output_dir=\"\""], "output_dir='': empty"),
        "TAG": ([f"output_dir={tiny_tag_dir}"], "is the TAG folder data.tag_path="),
        "resume false": (["resume=false"], "holds files the project did not write"),
    }
    before = tree_hash(tmp_path)
    for name, (over, said) in cases.items():
        assert _driver(["--config", str(path), *over]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: output_dir=") and said in err[0], \
            (name, err)
    assert tree_hash(tmp_path) == before and not (tmp_path / "parts").exists()


def test_prepare_keeps_the_config_file_and_resume_false_removes_only_checkpoints(
        tmp_path, tiny_tag_dir, tiny_bert_dir, capsys):
    from lmgnn_dist.config import load_config
    from lmgnn_dist.drivers.prepare import prepare_run

    run = tmp_path / "exp1"  # the common layout: the user's config inside the run folder
    run.mkdir()
    cfg = tiny_config(tmp_path, tiny_tag_dir, tiny_bert_dir, output_dir=str(run))
    text = "# my experiment\n" + yaml.safe_dump(cfg)
    (run / "config.yaml").write_text(text)
    plan, _, resolved = prepare_run(load_config(str(run / "config.yaml")),
                                    str(run / "config.yaml"))
    assert resolved == str(run / "configs" / "001.yaml") and (run / MARKER).is_file()
    assert (run / "config.yaml").read_text() == text  # never written over
    assert yaml.safe_load((run / "configs" / "001.yaml").read_text())["seed"] == 0
    # a complete checkpoint of an earlier run, and its progress checkpoint
    for name in ("stage2", "stage3.partial"):
        (run / name).mkdir()
        (run / name / "metrics.json").write_text(json.dumps({"step": 1}))
    capsys.readouterr()
    prepare_run(load_config(str(run / "config.yaml"), ["resume=false"]),
                str(run / "config.yaml"))
    out = capsys.readouterr().out
    assert (f"[pipeline] resume: false: removing the earlier checkpoint(s) stage2, "
            f"stage3.partial in {run}") in out
    assert not (run / "stage2").exists() and not (run / "stage3.partial").exists()
    assert (run / "config.yaml").read_text() == text
    assert sorted(os.listdir(run / "configs")) == ["001.yaml", "002.yaml"]
