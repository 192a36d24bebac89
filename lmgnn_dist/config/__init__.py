"""Typed run configuration: sections grouped by concern, loaded from YAML with CLI overrides.

A run config is one YAML file whose top-level keys are the sections below; every field has a
default, so a YAML names only what it changes. A file may start from another one with
``base: other.yaml`` (a path relative to the file; its sections are merged key by key, the
file's own values win), e.g. one shared settings file and a small file per task. Overrides use
dotted keys, values parsed as YAML::

    python -m lmgnn_dist.drivers.pipeline --config examples/cora/pipeline.yaml \\
        stage3.max_steps=10 model.fanouts=[5,5] data.max_seq_len=64

Each section is a pydantic dataclass whose fields carry their rules (:mod:`.base`); the
cross-section rules are in :class:`RunConfig`. Unknown keys, values of the wrong type or
outside their rule, duplicate YAML keys and invalid combinations raise :class:`ConfigError`
with one line naming the file and the dotted key, e.g.
``run.yaml: stage3.lm_lr must be > 0, got -1.0``.

==============  =====================================================================
module          holds
==============  =====================================================================
:mod:`.base`    :class:`ConfigError`, the section decorator, value rules (``PosInt`` ...)
:mod:`.sections` ``data``, ``task``, ``model`` (+ ``sparse_attention``), the ``*_KINDS``
:mod:`.training` ``stage1``, ``stage2``, ``stage3``, ``launch``
:mod:`.run`     :class:`RunConfig` and the cross-section rules
:mod:`.loading` YAML, ``base:`` chains, overrides, :func:`load_config`, :func:`dump_config`
==============  =====================================================================

May import: :mod:`partition` (the task table, option rules) and nothing else of
:mod:`lmgnn_dist`; every layer imports it. :mod:`.cli` holds what the commands' ``--help``
says about the config keys.
"""
from .base import ConfigError
from .loading import (apply_overrides, dump_config, from_dict, load_config, read_yaml, to_dict,
                      to_yaml)
from .run import RunConfig
from .sections import (EVAL_METRICS, GNN_KINDS, POOLING_KINDS, TASK_KINDS, DataConfig,
                       LoraSettings, ModelConfig, SparseAttentionConfig, TaskConfig)
from .training import LaunchConfig, Stage1Config, Stage2Config, Stage3Config

__all__ = [
    "ConfigError", "RunConfig", "DataConfig", "TaskConfig", "ModelConfig",
    "SparseAttentionConfig", "LoraSettings", "Stage1Config", "Stage2Config", "Stage3Config",
    "LaunchConfig",
    "TASK_KINDS", "GNN_KINDS", "POOLING_KINDS", "EVAL_METRICS", "load_config", "dump_config",
    "to_dict", "to_yaml",
    "from_dict", "read_yaml", "apply_overrides",
]
