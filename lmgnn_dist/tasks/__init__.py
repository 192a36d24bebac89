"""The three LM-GNN tasks as the pluggable heads of the stage trainers.

A :class:`Task` knows its training targets (nodes or edges), how to batch them with DGL's
samplers, its decoder and loss, and its evaluation:

==========================  ====================  ===========================  =================
task (``task.kind``)        targets               decoder / loss               metrics
==========================  ====================  ===========================  =================
``node_classification``     ``target_ntype``      linear, cross-entropy        accuracy, macro-F1
                            nodes with a label
``edge_classification``     ``target_etype``      ``W_ec [h_u || h_v]`` (eq. 3) per-class F1,
                            edges with a label    cross-entropy                macro-F1, accuracy
``link_prediction``         ``target_etype``      DistMult, logistic loss      MRR, Hits@1, @10
                            edges                 (eq. 2), joint / uniform     vs. fixed filtered
                                                  negatives                    negatives
==========================  ====================  ===========================  =================

Every batch exposes ``input_nodes`` / ``seeds`` (ntype -> ids) and ``blocks``, so the stage
code (LM encoding, cache, trainable-node choice) is the same for all tasks; the GNN output
``h`` (ntype -> ``[len(seeds[nt]), hidden]``) goes to :meth:`Task.loss` / the evaluation.

Link prediction: the partitioner has removed the target relation's val/test edges and their
reverses from the graph (:mod:`partition.holdout`); during training the batch's own positive
edges and their reverses are also dropped from its blocks (``exclude_training_targets``), so
the model never learns to read an edge off the graph it is asked to predict.

May import: :mod:`lmgnn_dist.data`, :mod:`lmgnn_dist.model`, the foundation and
:mod:`partition` (the task table :mod:`partition.task_kinds`); never trainers, jobs or
drivers. :mod:`.metrics` holds the metric math (accuracy, macro-F1, MRR, Hits@k).
"""
from __future__ import annotations

from partition.task_kinds import TASK_KINDS

from .base import Features, NodeBatch, Task, parse_etype
from .edge import EdgeClassificationTask, LinkPredictionTask
from .node import NodeClassificationTask

#: the registry: ``task.kind`` -> its class (every row of the task table has one)
TASKS = {t.kind: t for t in (NodeClassificationTask, EdgeClassificationTask, LinkPredictionTask)}
assert set(TASKS) == set(TASK_KINDS), "a task kind without its class (or the reverse)"


def make_task(cfg, g, meta: dict) -> Task:
    """The :class:`Task` of ``cfg.task.kind`` (validated against the graph; ValueError
    naming what is missing)."""
    return TASKS[cfg.task.kind](cfg, g, meta)


__all__ = ["TASKS", "Features", "NodeBatch", "Task", "NodeClassificationTask",
           "EdgeClassificationTask", "LinkPredictionTask", "make_task",
           "parse_etype"]
