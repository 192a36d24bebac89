"""The stage table (lmgnn_dist.stages) and the task table (partition.task_kinds) are the one
home of their decisions: the config, the task classes, the partitioner's check, the run plan
and the results tables all read them."""
import subprocess
import sys

import pytest

from lmgnn_dist.config import EVAL_METRICS, TASK_KINDS as CONFIG_KINDS, load_config
from lmgnn_dist.drivers.results import format_table, task_rows
from lmgnn_dist.run.runplan import PlanError, RunPlan
from lmgnn_dist.stages import STAGE_ORDER, STAGES, labels_of, stage, variant_of
from partition.task_check import TaskSchemaError, check_task_against_tag
from partition.task_kinds import TASK_KINDS, metric_info


def test_tables_import_without_dgl_or_torch():
    code = ("import sys, lmgnn_dist.stages, partition.task_kinds; "
            "print('dgl' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_task_table_drives_config_tasks_and_partition_check(tmp_path):
    from lmgnn_dist.tasks import TASKS

    assert CONFIG_KINDS == tuple(TASK_KINDS) and set(TASKS) == set(TASK_KINDS)
    for kind, row in TASK_KINDS.items():
        assert EVAL_METRICS[kind] == row.metrics
        assert (TASKS[kind].primary, tuple(TASKS[kind].metric_names)) == (row.primary, row.metrics)
        assert metric_info(kind) == (row.primary, row.metrics)
    assert metric_info("edge_classification", "acc") == ("acc", ("macro_f1", "acc"))
    with pytest.raises(TaskSchemaError, match="not one of"):
        check_task_against_tag(tmp_path, "graph_regression")
    with pytest.raises(ValueError, match="task.target_etype"):
        load_config(None, ["task.kind=link_prediction"])  # an etype task names its etype


def test_stage_table_order_start_points_and_plan(tmp_path):
    assert STAGE_ORDER == ("baseline", "stage1", "stage2", "stage3")
    assert [s.number for s in STAGES] == [None, 1, 2, 3]
    cfg = load_config(None, [f"output_dir={tmp_path}", "stages=[2,3]", "baseline=true"])
    plan = RunPlan.from_config(cfg)
    assert plan.stages == ("baseline", "stage2", "stage3")
    with pytest.raises(PlanError, match="stage 3 needs the stage-2 checkpoint"):
        plan.start_of("stage3")
    with pytest.raises(PlanError, match="unknown stage 'stage9'"):
        plan.start_of("stage9")
    (tmp_path / "stage2").mkdir()
    (tmp_path / "stage2" / "metrics.json").write_text("{}")
    start = plan.start_of("stage3")
    assert start.head_dir == tmp_path / "stage2" and start.lm_dir is None  # no stage 1 done
    (tmp_path / "stage1").mkdir()
    (tmp_path / "stage1" / "metrics.json").write_text("{}")
    assert plan.start_of("stage2").lm_dir == tmp_path / "stage1"
    assert plan.start_of("baseline").lm_dir is None  # the baseline never takes stage 1's LMs


def test_variants_are_recorded_not_guessed():
    cfg = load_config(None, ["stage1.objective=task", "stage3.mode=lm_only"])
    assert variant_of("stage1", cfg) == "task" and variant_of("stage3", cfg) == "lm_only"
    assert variant_of("stage2", cfg) == "default"
    # a stage-1 row with validation metrics is still labelled by its recorded variant
    lp = {"val_acc": 0.5, "variant": "default"}
    assert labels_of("stage1", lp).row == "1: graph-aware LM pre-fine-tune"
    assert labels_of("stage3", {"steps": 0}).row == "3: re-encode + evaluate (0 steps)"
    assert labels_of("stage3", {"steps": 0, "variant": "lm_only"}).short == "stage 3 (LM only)"
    assert stage("stage1").label("task").task_row is None  # not in the several-task table
    assert labels_of("baseline", {}, "rgat").row == "frozen LM + RGAT (baseline)"


def test_results_tables_follow_the_stage_table():
    r = lambda v: {"val_acc": v, "test_acc": v, "seconds": 1.0,  # noqa: E731
                   "peak_rss_mb_max_trainer": 1.0}
    stages = {"stage3": {**r(0.9), "variant": "lm_only"}, "baseline": r(0.7),
              "stage2": r(0.8)}
    rows = [line.split("  ")[0] for line in format_table(stages).splitlines()[2:]]
    assert rows == ["frozen LM + RGCN (baseline)", "2: GNN warm-start (LM frozen)",
                    "3: LM-only fine-tune (no graph)"]  # run order, whatever the dict order
    summary = {"config": {"task": {"target_ntype": "paper", "target_etype": ""}},
               "task": "node_classification", "stages": stages}
    assert [(t["stage"], t["model"], t["target"]) for t in task_rows(summary)] == [
        ("baseline", "frozen LM + RGCN", "paper"), ("stage2", "stage 2 (warm-start)", "paper"),
        ("stage3", "after stage 3 (LM only)", "paper")]
