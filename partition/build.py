"""TAG -> DGL heterograph -> ``dgl.distributed.partition_graph`` partitions.

Node data written for every node type:

==============  ========================  ==========================================
name            dtype / shape             meaning
==============  ========================  ==========================================
``input_ids``   int32 ``[N, max_seq_len]`` token ids, padded (see :mod:`.tokenize`); text
                                           node types only
``orig_id``     int64 ``[N]``              the user's id from ``nodes/<ntype>.parquet``
``seq_len``     int64 ``[N]``              real tokens in ``input_ids`` (incl. [CLS]/[SEP]);
                                           text node types only
``in_degree``   int64 ``[N]``              in-edges over all relations (degree policies)
``label``       int64 ``[N]``              class id, ``-1`` unlabelled (if labelled)
``train_mask``  uint8 ``[N]``              1 if ``split == "train"`` (also ``val_mask``,
                                           ``test_mask``; only if the table has a split)
==============  ========================  ==========================================

Edge data: ``label`` and ``train_mask``/``val_mask``/``test_mask`` when the edge table has
them, and ``orig_row`` (int64, the row in the edge file).

Beside DGL's ``<graph_name>.json`` the partitioner writes ``lmgnn_meta.json`` (tokenizer,
max length, pad id, classes per type, text-less types, counts, relations and node types left
out because they were empty, and the ``fingerprint`` of its inputs, see
:mod:`.fingerprint`), ``orig_ids/<ntype>.npy`` and the marker ``.lmgnn-partition``
(:mod:`.outdir`: only a folder with it is ever replaced).
With ``holdout_etypes`` (link prediction) the val/test edges of those relations and their
reverses are removed before partitioning (:mod:`.holdout`) and saved with their filtered
negatives in ``holdout/<src>__<etype>__<dst>.npz`` (``{val,test}_{src,dst,neg}``, int64, in
the partitioned graph's node ids; see :func:`load_holdout`). With ``add_reverse_edges`` every
relation whose reverse is not in the TAG gets ``rev_<etype>`` first (:mod:`.reverse`;
``lmgnn_meta.json`` records what was added and skipped under ``reverse_edges``). The whole output
folder is first written to a sibling temp folder and renamed into place, so a crash never
leaves a half-written partition set.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from .fingerprint import META_FILE, fingerprint, fingerprint_changes  # noqa: F401 (re-export)
from .graph_checks import check_num_parts, check_token_counts, drop_empty
from .holdout import hold_out, parse_etype
from .options import PartitionOptions
from .reverse import add_reverse_edges
from .tag import SPLIT_CODE, TAG, iter_texts, read_tag
from .outdir import staged_output
from .tokenize import check_max_seq_len, load_tokenizer, token_lengths, tokenize_texts



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

    ``input_ids[ntype]`` must have one row per node of every text node type.
    """
    import dgl
    import torch

    data = {t.canonical_etype: (torch.from_numpy(t.src), torch.from_numpy(t.dst))
            for t in tag.edges.values()}
    g = dgl.heterograph(data, num_nodes_dict={nt: t.num_nodes for nt, t in tag.nodes.items()})
    for ntype, t in tag.nodes.items():
        nd = g.nodes[ntype].data
        if t.has_text:
            if input_ids[ntype].shape[0] != t.num_nodes:
                raise ValueError(f"input_ids for {ntype} has {input_ids[ntype].shape[0]} rows, "
                                 f"expected {t.num_nodes}")
            nd["input_ids"] = torch.from_numpy(input_ids[ntype])
            nd["seq_len"] = torch.from_numpy(token_lengths(input_ids[ntype], pad_token_id))
        nd["orig_id"] = torch.from_numpy(t.ids.copy())
        nd["in_degree"] = sum((g.in_degrees(etype=c) for c in g.canonical_etypes if c[2] == ntype),
                              torch.zeros(t.num_nodes, dtype=torch.int64))
        if t.label is not None:
            nd["label"] = torch.from_numpy(t.label)
        for k, v in _split_masks(t.split).items():
            nd[k] = torch.from_numpy(v)
    for cetype, t in tag.edges.items():
        ed = g.edges[cetype].data
        ed["orig_row"] = (torch.from_numpy(t.orig_row) if t.orig_row is not None
                          else torch.arange(t.num_edges, dtype=torch.int64))
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
        Bad options (naming the option), a ``max_seq_len`` beyond the model's positions, more
        parts than nodes, a graph DGL cannot split into ``num_parts``.
    partition.outdir.OutputDirError (a ValueError)
        ``out_dir`` holds data the partitioner did not write, is or overlaps the TAG folder,
        is a file, or cannot be created; checked before any work.
    FileNotFoundError
        The model is not found offline (:func:`partition.tokenize.resolve_model_path`).

    Nothing is written unless everything succeeds: the partitions go to a temp folder that
    replaces ``out_dir`` at the end (:func:`partition.outdir.staged_output`), with a marker
    file and the inputs' fingerprint (:mod:`partition.fingerprint`) in ``lmgnn_meta.json``.
    """
    opts.validate()
    print_note = (lambda msg: print(f"[partition] {msg}", flush=True)) if progress else (
        lambda msg: None)
    with staged_output(out_dir, tag_dir) as tmp_dir:  # refuses a bad out_dir before any work
        meta = _partition_into(tmp_dir, Path(tag_dir), opts, print_note, progress)
    return meta


def _partition_into(tmp_dir: Path, tag_dir: Path, opts: PartitionOptions, print_note,
                    progress: bool) -> dict:
    """The work of :func:`partition_tag`, written into the temp folder ``tmp_dir``."""
    times = {}
    t0 = time.time()
    recorded = fingerprint(tag_dir, opts) if Path(tag_dir).is_dir() else None
    tokenizer = load_tokenizer(opts.model)
    check_max_seq_len(opts.model, opts.max_seq_len, tokenizer)
    tag = read_tag(tag_dir, load_text=False)
    reverse_info = None
    if opts.add_reverse_edges:  # before the hold-out: it removes held-out edges' reverses
        tag, reverse_info = add_reverse_edges(tag)
        for name, r in reverse_info["added"].items():
            print_note(f"added reverse relation {name} ({r['num_edges']} edges of "
                       f"{r['reverse_of']} reversed)")
    held, holdout_info = {}, {}
    for name in opts.holdout_etypes:
        tag, held[name], holdout_info[name] = hold_out(tag, parse_etype(name, tag),
                                                       opts.eval_negatives, opts.holdout_seed)
        print_note(f"link prediction on {name}: held out {holdout_info[name]['val']} "
                   f"val + {holdout_info[name]['test']} test edges (and "
                   f"{holdout_info[name]['removed_reverse']} reverse edges), "
                   f"{opts.eval_negatives} filtered negatives each")
    tag, dropped = drop_empty(tag, keep=opts.holdout_etypes)
    for note in dropped:
        print_note(note)
    check_num_parts(tag, opts.num_parts)
    for nt, t in tag.nodes.items():
        if not t.has_text:
            print_note(f"node type {nt!r} has no text column: its nodes get learnable embeddings")
    times["read_s"] = time.time() - t0
    times["read_peak_rss_mb"] = _peak_rss_mb()

    t0 = time.time()
    input_ids = {nt: tokenize_texts(iter_texts(t), tokenizer, opts.max_seq_len,
                                    num_texts=t.num_nodes, desc=f"tokenize {nt}",
                                    progress=progress)
                 for nt, t in tag.nodes.items() if t.has_text}
    check_token_counts(tag, input_ids, tokenizer.pad_token_id, len(tokenizer("")["input_ids"]))
    times["tokenize_s"] = time.time() - t0
    times["tokenize_peak_rss_mb"] = _peak_rss_mb()

    t0 = time.time()
    g = build_graph(tag, input_ids, tokenizer.pad_token_id)
    times["build_s"] = time.time() - t0
    times["build_peak_rss_mb"] = _peak_rss_mb()

    t0 = time.time()
    orig_nids = _partition_graph(g, tmp_dir, opts)
    times["partition_s"] = time.time() - t0
    times["partition_peak_rss_mb"] = _peak_rss_mb()
    (tmp_dir / "orig_ids").mkdir()
    for nt, new2old in orig_nids.items():
        # new DGL id -> user id of nodes/<nt>.parquet
        np.save(tmp_dir / "orig_ids" / f"{nt}.npy", tag.nodes[nt].ids[new2old])
    if held:
        _save_holdout(tmp_dir / "holdout", held, orig_nids)
    meta = {
        "graph_name": opts.graph_name,
        "part_config": f"{opts.graph_name}.json",
        "tag": str(Path(tag_dir).resolve()),
        "tag_name": tag.name,
        "options": asdict(opts),
        "fingerprint": recorded,
        "pad_token_id": int(tokenizer.pad_token_id),
        "ntypes": {nt: {"num_nodes": t.num_nodes, "classes": t.classes,
                        "has_split": t.split is not None, "has_text": t.has_text}
                   for nt, t in tag.nodes.items()},
        "canonical_etypes": {"__".join(ce): {"num_edges": t.num_edges, "classes": t.classes,
                                             "has_split": t.split is not None}
                             for ce, t in tag.edges.items()},
        "left_out": dropped,
        "reverse_edges": reverse_info,
        "holdout": holdout_info,
        "times": times,
    }
    (tmp_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def _partition_graph(g, out: Path, opts: PartitionOptions) -> Dict[str, np.ndarray]:
    """``dgl.distributed.partition_graph`` into ``out``; returns new DGL id -> row per ntype.

    Raises ValueError (one line) when DGL cannot split this graph into ``opts.num_parts``
    parts: its partitioner fails with an internal error when a part gets no edge, which
    small graphs with many parts hit.
    """
    import dgl

    from .metis import seeded_metis

    balance = None
    if opts.balance_train and opts.method == "metis":
        balance = {nt: g.nodes[nt].data["train_mask"] for nt in g.ntypes
                   if "train_mask" in g.nodes[nt].data} or None
        if balance and len(g.ntypes) == 1:
            balance = next(iter(balance.values()))
    dgl.seed(opts.holdout_seed)  # the random method draws with DGL's generator
    try:
        with seeded_metis(opts.holdout_seed):  # DGL's own METIS splits differently each call
            orig_nids, _ = dgl.distributed.partition_graph(
                g, opts.graph_name, opts.num_parts, str(out), part_method=opts.method,
                balance_ntypes=balance, balance_edges=opts.method == "metis",
                return_mapping=True, num_trainers_per_machine=opts.num_trainers_per_machine,
            )
    except (dgl.DGLError, IndexError, TypeError, RuntimeError) as exc:
        if opts.num_parts == 1:
            raise
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise ValueError(f"DGL could not split the graph ({g.num_nodes()} nodes, "
                         f"{g.num_edges()} edges) into num_parts (--num-parts) {opts.num_parts} "
                         f"parts with method {opts.method!r}; every part needs edges, use fewer "
                         f"parts ({type(exc).__name__}: {first})") from exc
    if not isinstance(orig_nids, dict):
        orig_nids = {g.ntypes[0]: orig_nids}
    return {nt: v.numpy() for nt, v in orig_nids.items()}


def _save_holdout(folder: Path, held: dict, new2old: Dict[str, np.ndarray]) -> None:
    """Write each held-out relation's edges in the partitioned graph's node ids."""
    folder.mkdir()
    old2new = {}
    for nt, n2o in new2old.items():
        old2new[nt] = np.empty(len(n2o), dtype=np.int64)
        old2new[nt][n2o] = np.arange(len(n2o), dtype=np.int64)
    for name, splits in held.items():
        src_t, _, dst_t = name.split("__")
        arrays = {}
        for split, h in splits.items():
            arrays[f"{split}_src"] = old2new[src_t][h.src]
            arrays[f"{split}_dst"] = old2new[dst_t][h.dst]
            arrays[f"{split}_neg"] = np.where(h.neg_dst >= 0, old2new[dst_t][h.neg_dst], -1)
        np.savez(folder / f"{name}.npz", **arrays)


def load_holdout(part_dir: os.PathLike, etype_name: str) -> Dict[str, np.ndarray]:
    """The held-out val/test edges of link-prediction target ``etype_name``.

    Returns ``{"val_src", "val_dst", "val_neg", "test_src", ...}``: int64 ``[E]`` end points
    and ``[E, K]`` negatives (``-1`` = padding) in the partitioned graph's node ids.

    Raises FileNotFoundError naming the file if the partitions were made without
    ``holdout_etypes`` containing ``etype_name``.
    """
    path = Path(part_dir) / "holdout" / f"{etype_name}.npz"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; partition with holdout_etypes="
                                f"[{etype_name!r}] for link prediction on it")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


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
