"""The Stack Exchange TAG's graph: its node types and relations, the edges resolved from the
dump's records (unresolved endpoints counted per relation), and the node and edge tables
(rows sorted by id / ``(src, dst)``, labels, seeded random splits, exact reverse relations).
Used by :func:`partition.converters.stackexchange.convert_stackexchange`.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa

from ..tag import SPLITS
from ..tag_write import random_split, split_strings

#: canonical relations in output order: (src_ntype, etype, dst_ntype)
RELATIONS: List[Tuple[str, str, str]] = [
    ("question", "has_answer", "answer"),
    ("question", "tagged", "tag"),
    ("user", "asks", "question"),
    ("user", "answers", "answer"),
    ("user", "writes", "comment"),
    ("question", "links", "question"),
    ("comment", "comments_on", "question"),
    ("comment", "comments_on", "answer"),
]
NODE_TYPES = ["question", "answer", "tag", "user", "comment"]

Pairs = Dict[Tuple[int, int], int]  # {(src, dst): label or 0}


def reverse_relation(rel: Tuple[str, str, str]) -> Tuple[str, str, str]:
    """``("question", "tagged", "tag") -> ("tag", "rev_tagged", "question")``."""
    return (rel[2], "rev_" + rel[1], rel[0])


def rel_name(rel: Tuple[str, str, str]) -> str:
    """``("question", "tagged", "tag") -> "question__tagged__tag"``."""
    return "__".join(rel)


def build_edges(questions: Dict[int, dict], answers: Dict[int, dict], tag_by_name: Dict[str, int],
                users: Dict[int, str], comments: Dict[int, dict],
                links: Pairs) -> Tuple[Dict[Tuple[str, str, str], Pairs], Dict[str, int], int]:
    """Resolve the records into ``(edges, dropped, accepted_unresolved)``.

    ``edges``: ``{relation: {(src, dst): label or 0}}`` for every relation of
    :data:`RELATIONS` (``links`` is taken as the ``links`` relation); a ``has_answer`` label is 1
    if the answer is its question's AcceptedAnswerId. ``dropped``: edges whose endpoint does not
    resolve, per relation name (all of :data:`RELATIONS`, in order). ``accepted_unresolved``:
    AcceptedAnswerIds that name no answer of that question.
    """
    edges: Dict[Tuple[str, str, str], Pairs] = {r: {} for r in RELATIONS}
    dropped: Dict[str, int] = {rel_name(r): 0 for r in RELATIONS}
    accepted_unresolved = 0
    for aid, a in sorted(answers.items()):
        q = questions.get(a["parent"]) if a["parent"] is not None else None
        if q is None:
            dropped["question__has_answer__answer"] += 1
            continue
        edges[RELATIONS[0]][(a["parent"], aid)] = int(q["accepted"] == aid)
    for qid, q in questions.items():
        if q["accepted"] is not None and (qid, q["accepted"]) not in edges[RELATIONS[0]]:
            accepted_unresolved += 1
        for tname in q["tags"]:
            tid = tag_by_name.get(tname)
            if tid is None:
                dropped["question__tagged__tag"] += 1
            else:
                edges[RELATIONS[1]][(qid, tid)] = 0
        if q["owner"] in users:
            edges[RELATIONS[2]][(q["owner"], qid)] = 0
        else:
            dropped["user__asks__question"] += 1
    for aid, a in answers.items():
        if a["owner"] in users:
            edges[RELATIONS[3]][(a["owner"], aid)] = 0
        else:
            dropped["user__answers__answer"] += 1
    for cid, c in comments.items():
        if c["user"] in users:
            edges[RELATIONS[4]][(c["user"], cid)] = 0
        else:
            dropped["user__writes__comment"] += 1
        rel = RELATIONS[6] if c["target"] == "question" else RELATIONS[7]
        edges[rel][(cid, c["post"])] = 0
    edges[RELATIONS[5]] = links
    return edges, dropped, accepted_unresolved


def _split_sizes(codes: np.ndarray) -> Dict[str, int]:
    return {s: int((codes == i + 1).sum()) for i, s in enumerate(SPLITS)}


def node_tables(node_records: Dict[str, dict], has_answer: Pairs, split: Tuple[float, ...],
                seed: int) -> Tuple[Dict[str, pa.Table], Dict[str, Dict[str, int]]]:
    """``(tables, split_sizes)``: one ``id, text`` table per node type of :data:`NODE_TYPES`
    (``node_records[ntype]``: id -> text, or -> a record with a ``text``), rows sorted by id.
    The question table adds ``label`` (1: one of its ``has_answer`` edges is accepted) and a
    ``random_split(split, seed)`` ``split``, whose sizes ``split_sizes["question"]`` gives.

    Raises ValueError for a node whose text is empty.
    """
    tables: Dict[str, pa.Table] = {}
    split_sizes: Dict[str, Dict[str, int]] = {}
    for ntype in NODE_TYPES:
        ids = sorted(node_records[ntype])
        texts = [v if isinstance(v, str) else v["text"] for v in
                 (node_records[ntype][i] for i in ids)]
        for i, t in zip(ids, texts):
            if not t.strip():
                raise ValueError(f"{ntype} id {i}: empty text after conversion")
        cols = {"id": pa.array(ids, pa.int64()), "text": pa.array(texts, pa.string())}
        if ntype == "question":
            answered = {q for (q, _a), y in has_answer.items() if y == 1}
            cols["label"] = pa.array([int(i in answered) for i in ids], pa.int64())
            codes = random_split(len(ids), split, seed)
            cols["split"] = split_strings(codes)
            split_sizes["question"] = _split_sizes(codes)
        tables[ntype] = pa.table(cols)
    return tables, split_sizes


def _edge_arrays(pairs: Pairs) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted ``(src, dst, value)`` arrays of a ``{(src, dst): value}`` dict."""
    keys = sorted(pairs)
    src = np.array([k[0] for k in keys], dtype=np.int64)
    dst = np.array([k[1] for k in keys], dtype=np.int64)
    val = np.array([pairs[k] for k in keys], dtype=np.int64)
    return src, dst, val


def edge_tables(edges: Dict[Tuple[str, str, str], Pairs], split: Tuple[float, ...],
                seed: int) -> Tuple[Dict[str, pa.Table], Dict[str, Dict[str, int]]]:
    """``(tables, split_sizes)``: by relation file name, each relation's ``src, dst`` table
    (rows sorted) followed by its exact reverse. ``has_answer`` and ``links`` add their
    ``label``; ``has_answer`` and ``tagged`` (edge classification / link prediction) add a
    ``random_split`` ``split`` seeded ``seed + 1`` / ``seed + 2``, sized in ``split_sizes``.
    """
    tables: Dict[str, pa.Table] = {}
    split_sizes: Dict[str, Dict[str, int]] = {}
    for rel in RELATIONS:
        src, dst, val = _edge_arrays(edges[rel])
        cols = {"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}
        if rel in (RELATIONS[0], RELATIONS[5]):
            cols["label"] = pa.array(val, pa.int64())
        if rel in (RELATIONS[0], RELATIONS[1]):  # edge classification / link prediction
            codes = random_split(len(src), split, seed + 1 + RELATIONS.index(rel))
            cols["split"] = split_strings(codes)
            split_sizes[rel_name(rel)] = _split_sizes(codes)
        tables[rel_name(rel)] = pa.table(cols)
        tables[rel_name(reverse_relation(rel))] = pa.table(
            {"src": pa.array(dst, pa.int64()), "dst": pa.array(src, pa.int64())})
    return tables, split_sizes


__all__: List[str] = ["RELATIONS", "NODE_TYPES", "reverse_relation", "rel_name", "build_edges",
                      "node_tables", "edge_tables"]
