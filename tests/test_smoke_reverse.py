"""One node type with two relations (a directed relation and the reverse the partitioner adds,
``data.add_reverse_edges``): DGL hands back ``input_nodes`` as a tensor but ``seeds`` as a
dict for that shape; node classification, edge classification and link prediction must all
run through every stage (real 2-server + 2-trainer runs with small budgets)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import yaml
from run_helpers import tiny_config

TASKS = {
    "nc": {"kind": "node_classification", "target_ntype": "paper"},
    "ec": {"kind": "edge_classification", "target_etype": "paper__cites__paper"},
    "lp": {"kind": "link_prediction", "target_etype": "paper__cites__paper",
           "eval_negatives": 5},
}


@pytest.mark.parametrize("name", list(TASKS))
def test_one_ntype_two_relations(name, tmp_path, tiny_directed_dir, tiny_bert_dir):
    cfg = tiny_config(tmp_path, tiny_directed_dir, tiny_bert_dir, task=TASKS[name],
                      baseline=False)
    cfg["data"]["graph_name"] = f"td_{name}"
    cfg["stage1"]["max_steps"] = 2
    cfg["stage2"]["epochs"] = 2
    cfg["stage3"].update(max_steps=2, batch_size=4, lm_train_nodes=4)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "lmgnn_dist.drivers.pipeline", "--config", str(path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    meta = json.loads((tmp_path / "parts" / "lmgnn_meta.json").read_text())
    assert set(meta["canonical_etypes"]) == {"paper__cites__paper", "paper__rev_cites__paper"}
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(res["stages"]) == {"stage1", "stage2", "stage3"}
    primary = res["primary"]
    for st in ("stage2", "stage3"):
        assert math.isfinite(res["stages"][st][f"test_{primary}"])
    if name == "lp":  # the held-out edges' reverses left the graph too
        assert meta["holdout"]["paper__cites__paper"]["reverse"] == "paper__rev_cites__paper"
        assert meta["holdout"]["paper__cites__paper"]["removed_reverse"] > 0
