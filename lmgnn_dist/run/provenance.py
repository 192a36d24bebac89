"""What a stage was trained on: its *inputs*, recorded in its checkpoint and compared on resume.

A stage's inputs (:func:`stage_inputs`) are everything that can change what it learns:

* ``config``: the config keys it reads -- ``seed``, ``data`` (less where files live and the
  rebuild policy: ``tag_path``, ``part_dir``, ``on_partition_change``), ``task``, ``model``
  (less the keys :func:`unread_keys` names: stage 1 has no GNN encoder),
  ``launch.precision`` and ``launch.num_trainers`` (the LMs' arithmetic, the batches each
  trainer draws) and the stage's own sections (:attr:`lmgnn_dist.stages.Stage.sections`:
  stage 3 also reads ``stage2`` for its GNN re-fit);
* ``partitions``: a digest of the partition fingerprint (the TAG files' content and the
  partition options; :mod:`partition.fingerprint`), not of where the folders are;
* ``code``: a digest of the project's Python source (``lmgnn_dist``, ``partition``,
  ``launch``, ``kernels``; :func:`~.code_version.source_digest`; the git commit and modified
  files are in ``metrics.json``'s ``code``, for people);
* ``starts_from``: ``{stage: digest of its inputs}`` of the checkpoints it starts from, so a
  re-run stage 2 makes stage 3 stale too.

Keys that cannot change a stage's numbers are left out: ``output_dir``, ``resume``,
``stages``, ``baseline``, ``checkpoint_every``, ``pipeline_depth``, the batch sizes of the
no-grad encode and of evaluation, and the rest of ``launch`` (machines, ports, restarts).

:func:`input_changes` says, one short phrase per difference, why a recorded stage is not
what the config asks for now (``data.max_seq_len 32 -> 16``, ``the partitions (TAG
content or partition options)``, ``the code (source 1a2b3c4d -> 5e6f7a8b)``, ``stage2,
which it starts from``). Importable without DGL or torch.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..stages import stage, variant_of
from .code_version import source_digest

_DATA_PLACES = ("tag_path", "part_dir", "on_partition_change")
_LAUNCH_KEYS = ("precision", "num_trainers")


def digest(obj: Any) -> str:
    """16 hex digits of SHA-256 over ``obj``'s canonical JSON (sorted keys)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def partition_digest(fingerprint: Mapping[str, Any]) -> str:
    """Digest of a partition fingerprint (``lmgnn_meta.json``'s ``fingerprint``, or
    :func:`partition.fingerprint.fingerprint` of the TAG and options) without modification
    times: the same TAG content and options give the same digest wherever they live."""
    files = {name: {k: v for k, v in entry.items() if k != "mtime_ns"}
             for name, entry in fingerprint.get("files", {}).items()}
    return digest({"files": files, "options": fingerprint.get("options", {})})


def unread_keys(cfg, name: str) -> Dict[str, Tuple[str, ...]]:
    """Keys of the shared sections that cannot change stage ``name``'s numbers: where files
    live, and ``model.lm_gradient_checkpointing`` (recomputes the same activations)
    everywhere; for stage 1, which trains the LMs without a GNN encoder, the GNN's keys and
    the task's negative sampler (stage 1 draws its own), and -- unless it fine-tunes on the
    task with an MLP head (``stage1.objective: task``) -- that head's width and dropout."""
    out = {"data": _DATA_PLACES, "model": ("lm_gradient_checkpointing",)}
    if name == "stage1":
        head = () if variant_of(name, cfg) == "task" else ("hidden_size", "dropout")
        out["model"] += ("gnn", "num_heads", "num_layers", "fanouts") + head
        out["task"] = ("negative_sampler",)
    return out


def stage_config(cfg, name: str) -> Dict[str, Any]:
    """The config keys stage ``name`` reads (see the module docstring), as plain data."""
    d, unread = dataclasses.asdict(cfg), unread_keys(cfg, name)
    out = {"seed": d["seed"], "launch": {k: d["launch"][k] for k in _LAUNCH_KEYS}}
    for sec in ("data", "task", "model"):
        out[sec] = {k: v for k, v in d[sec].items() if k not in unread.get(sec, ())}
    for sec in stage(name).sections:
        out[sec] = d[sec]
    return out


def stage_inputs(cfg, name: str, fingerprint: Mapping[str, Any],
                 starts_from: Mapping[str, str]) -> Dict[str, Any]:
    """The inputs of stage ``name`` of a run configured by ``cfg`` (a ``RunConfig``) on the
    partitions of ``fingerprint``, starting from the checkpoints ``starts_from`` (``{stage:
    digest of its inputs}``). JSON-serialisable; recorded as ``inputs`` in the stage's
    ``metrics.json``."""
    return {"config": stage_config(cfg, name), "partitions": partition_digest(fingerprint),
            "code": source_digest(), "starts_from": dict(starts_from)}


def inputs_digest(inputs: Mapping[str, Any]) -> str:
    """Digest of ``inputs``: what a progress checkpoint and a later stage record of it."""
    return digest(inputs)


def _flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, Mapping):
        return {prefix: d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def input_changes(recorded: Optional[Mapping[str, Any]], wanted: Mapping[str, Any]
                  ) -> List[str]:
    """Why a checkpoint recorded with ``recorded`` inputs is not one with ``wanted`` (empty:
    reuse it). A checkpoint without inputs (written before they were recorded) differs."""
    if not recorded:
        return ["it records no inputs (written by an older version)"]
    out = []
    old, new = _flat(recorded.get("config", {})), _flat(wanted["config"])
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<unset>") != new.get(key, "<unset>"):
            out.append(f"{key} {old.get(key, '<unset>')!r} -> {new.get(key, '<unset>')!r}")
    if recorded.get("partitions") != wanted["partitions"]:
        out.append("the partitions (TAG content or partition options)")
    if recorded.get("code") != wanted["code"]:
        out.append(f"the code (source {recorded.get('code')} -> {wanted['code']})")
    old_from, new_from = recorded.get("starts_from", {}), wanted["starts_from"]
    for name in sorted(set(old_from) | set(new_from)):
        if old_from.get(name) != new_from.get(name):
            out.append(f"{name}, which it starts from" if name in new_from
                       else f"it no longer starts from {name}")
    return out
