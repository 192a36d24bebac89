"""The pipeline driver's checks before anything starts, and its task table."""
from __future__ import annotations

import json

from lmgnn_dist.drivers.pipeline import main
from lmgnn_dist.drivers.results import format_task_table, task_rows


def test_missing_model_path_is_one_error_line_before_anything_starts(tmp_path, capsys):
    rc = main(["--config", "examples/cora/pipeline.yaml", f"output_dir={tmp_path / 'run'}",
               f"model.lm={tmp_path / 'no-such-model'}"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model.lm: model path")
    assert "does not exist" in err[0]
    assert not (tmp_path / "run").exists()  # nothing was written or started
    rc = main(["--config", "examples/stackexchange/ec.yaml", f"output_dir={tmp_path / 'run'}",
               "model.encoders={tag: ./missing-tag-model}"])
    assert rc == 2 and "model.encoders.tag: model path" in capsys.readouterr().err


def test_own_lm_with_another_vocabulary_is_refused(tmp_path, tiny_bert_dir, capsys):
    from transformers import AutoTokenizer

    other = tmp_path / "other-tok"
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tok.add_tokens(["qubitness"])  # one token more: ids no longer mean the same
    tok.save_pretrained(other)
    rc = main(["--config", "examples/stackexchange/ec.yaml", f"output_dir={tmp_path / 'run'}",
               f"model.lm={tiny_bert_dir}", f"model.encoders={{tag: {other}}}"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.encoders.tag=" in err and "has another vocabulary than model.lm" in err


def test_task_table_rows_and_format():
    summary = {"config": {"task": {"target_ntype": "q", "target_etype": "q__has__a"}},
               "task": "edge_classification",
               "stages": {"baseline": {"val_macro_f1": 0.5, "test_macro_f1": 0.25,
                                       "val_f1_per_class": {"no": 0.5, "yes": 0.5},
                                       "test_f1_per_class": {"no": 0.5, "yes": 0.0},
                                       "losses": [1.0]},
                          "stage1": {"loss_first": 3.0},
                          "stage3": {"val_macro_f1": 0.75, "test_macro_f1": 0.625,
                                     "val_f1_per_class": {"no": 0.75, "yes": 0.75},
                                     "test_f1_per_class": {"no": 0.75, "yes": 0.5}}}}
    rows = task_rows(summary)
    assert [r["stage"] for r in rows] == ["baseline", "stage3"]
    assert rows[1]["target"] == "q__has__a" and rows[1]["test_macro_f1"] == 0.625
    table = format_task_table(rows)
    assert "macro_f1 0.6250 (0.7500)" in table and "F1[yes] 0.5000 (0.7500)" in table
    assert "frozen LM + RGCN" in table and "after stage 3 (joint)" in table
    json.dumps(rows)  # written to the --summary file


def test_a_trainer_that_raises_ends_the_job(tmp_path, tiny_tag_dir, tiny_bert_dir):
    """A config that does not fit the graph, found inside the trainers (after DGL started),
    ends the whole job promptly with the trainer's error line and exit code 2, which the
    driver does not retry."""
    import subprocess
    import sys
    import time

    import yaml

    cfg = {"output_dir": str(tmp_path / "run"),
           "data": {"tag_path": str(tiny_tag_dir), "part_dir": str(tmp_path / "parts"),
                    "graph_name": "tiny", "max_seq_len": 16},
           "model": {"lm": str(tiny_bert_dir), "encoders": {"paper": "embedding"}}}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config",
                          str(tmp_path / "run.yaml")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    assert "error: no node type is encoded by an LM" in out.stdout
    assert "exited with code 2; stopping the others" in out.stdout
    assert "(bad input): not retried" in out.stderr and "restart 1/" not in out.stdout
    assert time.time() - t0 < 120


def test_a_task_target_missing_from_the_tag_is_refused_before_anything_starts(
        tmp_path, tiny_tag_dir, tiny_bert_dir, capsys):
    rc = main(["--config", "examples/cora/pipeline.yaml", f"output_dir={tmp_path / 'run'}",
               f"data.tag_path={tiny_tag_dir}", f"data.part_dir={tmp_path / 'parts'}",
               f"model.lm={tiny_bert_dir}", "data.max_seq_len=16", "task.target_ntype=nope"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "'nope'" in err[0] and err[0].startswith("error: ")
    assert not (tmp_path / "parts").exists() and not (tmp_path / "run").exists()
