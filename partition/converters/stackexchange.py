"""Convert an official Stack Exchange data dump (XML) into the project's Parquet TAG format.

Input: one site's dump folder with ``Posts.xml``, ``Users.xml``, ``Tags.xml``,
``Comments.xml`` and ``PostLinks.xml`` (``Votes.xml``, ``Badges.xml`` and
``PostHistory.xml`` are not used). Each file is ``<rows><row Attr="..."/>...</rows>``;
it is read with :func:`xml.etree.ElementTree.iterparse` (streaming, rows are cleared after
use). HTML in post bodies and user ``AboutMe`` is turned into plain text with BeautifulSoup
(``html.parser`` backend), which also unescapes entities; titles, display names, tag names
and comments are plain text in the dump and are kept as they are (whitespace normalised).

Format mapping (``out_dir`` is a TAG folder, see :mod:`partition.tag`)::

    nodes/question.parquet  id = Posts.Id (PostTypeId 1)  text = Title + "\\n" + body text
                            label = 1 if one of its answers is accepted else 0, classes
                            ["no_accepted_answer", "has_accepted_answer"] (node
                            classification); split = seeded random train/val/test
    nodes/answer.parquet    id = Posts.Id (PostTypeId 2)  text = body text
    nodes/tag.parquet       id = Tags.Id    text = TagName [+ "\\n" + text of the
                                                  ExcerptPostId post when it is present]
    nodes/comment.parquet   id = Comments.Id   text = Text   (comments on a question/answer)
    nodes/user.parquet      id = Users.Id   text = DisplayName [+ "\\n" + AboutMe text]
                            only users who ask/answer a kept question/answer or write a
                            kept comment (users who only own tag-wiki posts, or did nothing,
                            are left out and counted)

    edges (each with its exact reverse ``<dst>__rev_<etype>__<src>``, src/dst swapped):
    question__has_answer__answer     Posts.ParentId of each answer;
                                     label 1 if the answer is the question's
                                     AcceptedAnswerId else 0, classes
                                     ["not_accepted", "accepted"]; seeded random split
    question__tagged__tag            the question's Tags "<a><b>" resolved by TagName;
                                     seeded random split (link-prediction target)
    user__asks__question             Posts.OwnerUserId of each question
    user__answers__answer            Posts.OwnerUserId of each answer
    user__writes__comment            Comments.UserId
    question__links__question        PostLinks PostId -> RelatedPostId; label 0 "linked"
                                     (LinkTypeId 1) or 1 "duplicate" (LinkTypeId 3); a
                                     pair listed with both types becomes one "duplicate"
                                     edge (counted as ``link_pairs_merged``)
    comment__comments_on__question   Comments.PostId when it is a question
    comment__comments_on__answer     Comments.PostId when it is an answer

Node and edge rows are sorted by id / (src, dst), so a conversion is deterministic for a
given ``seed``. Edges whose endpoint does not resolve (a post whose owner is not in
Users.xml or was deleted, a link to a post missing from the dump, ...) are dropped and
counted per relation in the returned counts and in ``metadata.json["conversion"]``
(``comment__comments_on__post`` counts comments on a post that is neither a kept question
nor answer: such a comment gets no node either); nothing is dropped silently.

Usage::

    python -m partition.converters.stackexchange --dump DUMP_DIR --out OUT_DIR [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from ..atomic import write_json_atomic, write_parquet_atomic
from ..tag import SPLITS
from ..tag_write import random_split, split_strings

DEFAULT_SITE = "quantumcomputing.stackexchange.com"
LICENSE = (
    "CC BY-SA: Stack Exchange user contributions; CC BY-SA 3.0 "
    "(https://creativecommons.org/licenses/by-sa/3.0/) for content created before "
    "2018-05-02, CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/) from "
    "2018-05-02 on. Attribution required: the site and the authors (the users)."
)
ACCEPTED_CLASSES = ["not_accepted", "accepted"]
QUESTION_CLASSES = ["no_accepted_answer", "has_accepted_answer"]
LINK_CLASSES = ["linked", "duplicate"]
_LINK_TYPE = {1: 0, 3: 1}  # PostLinks.LinkTypeId -> label
_TAG_RE = re.compile(r"<([^<>]+)>")
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_TRAILING_WS_RE = re.compile(r"[ \t\r\f\v]+\n")

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


def reverse_relation(rel: Tuple[str, str, str]) -> Tuple[str, str, str]:
    """``("question", "tagged", "tag") -> ("tag", "rev_tagged", "question")``."""
    return (rel[2], "rev_" + rel[1], rel[0])


def rel_name(rel: Tuple[str, str, str]) -> str:
    """``("question", "tagged", "tag") -> "question__tagged__tag"``."""
    return "__".join(rel)


# --------------------------------------------------------------------------------- reading
def _iter_rows(path: Path, verbose: bool) -> Iterator[Tuple[int, Dict[str, str]]]:
    """Stream ``(row_number, attributes)`` for each ``<row>`` of a dump file.

    Raises FileNotFoundError naming the file, ValueError naming file and line on bad XML.
    """
    if not path.is_file():
        raise FileNotFoundError(f"Stack Exchange dump file not found: {path}")
    n = 0
    try:
        for _event, elem in ET.iterparse(str(path), events=("end",)):
            if elem.tag == "row":
                yield n, dict(elem.attrib)
                n += 1
                elem.clear()
    except ET.ParseError as exc:
        line, col = exc.position
        raise ValueError(f"{path}: malformed XML at line {line}, column {col}: {exc}") from exc
    if verbose:
        print(f"[stackexchange] read {path.name}: {n} rows", flush=True)


def _int(row: Dict[str, str], key: str, path: Path, rowno: int) -> Optional[int]:
    """Integer attribute or None when absent; ValueError naming file/row when not an int."""
    value = row.get(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"{path}: row {rowno} (Id={row.get('Id')!r}) has non-integer {key}={value!r}"
        ) from None


def _require(row: Dict[str, str], key: str, path: Path, rowno: int) -> int:
    value = _int(row, key, path, rowno)
    if value is None:
        raise ValueError(f"{path}: row {rowno} (Id={row.get('Id')!r}) lacks the {key} attribute")
    return value


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    text = _TRAILING_WS_RE.sub("\n", text)
    return _BLANK_LINES_RE.sub("\n\n", text).strip()


def html_to_text(html: Optional[str]) -> str:
    """Plain text of an HTML fragment (tags removed, entities unescaped, blank runs collapsed).

    Uses BeautifulSoup with the stdlib ``html.parser`` backend.
    """
    if not html:
        return ""
    try:
        from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the Stack Exchange converter needs BeautifulSoup: pip install 'beautifulsoup4>=4.12'"
        ) from exc

    with warnings.catch_warnings():
        # a body that is just a URL or a file-like name is still text, not a locator
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        text = BeautifulSoup(html, "html.parser").get_text()
    return _normalise(text)


# --------------------------------------------------------------------------------- writing
def _edge_arrays(pairs: Dict[Tuple[int, int], int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted ``(src, dst, value)`` arrays of a ``{(src, dst): value}`` dict."""
    keys = sorted(pairs)
    src = np.array([k[0] for k in keys], dtype=np.int64)
    dst = np.array([k[1] for k in keys], dtype=np.int64)
    val = np.array([pairs[k] for k in keys], dtype=np.int64)
    return src, dst, val


# ------------------------------------------------------------------------------ conversion
def convert_stackexchange(
    dump_dir: os.PathLike,
    out_dir: os.PathLike,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    site: str = DEFAULT_SITE,
    name: Optional[str] = None,
    source: Optional[str] = None,
    verbose: bool = True,
) -> Dict[str, object]:
    """Convert a Stack Exchange dump folder into a Parquet TAG folder.

    Parameters
    ----------
    dump_dir : folder with Posts.xml, Users.xml, Tags.xml, Comments.xml, PostLinks.xml.
    out_dir : TAG folder to write (created; files are written atomically, temp file then
        rename). Existing ``.parquet`` files in ``out_dir/nodes`` or ``out_dir/edges`` that
        this conversion would not write make it fail before anything is written.
    seed : seed of the random question ``split``; the ``has_answer`` and ``tagged`` edge
        splits use ``seed + 1`` and ``seed + 2`` (the same seed gives the same splits).
    split : train/val/test fractions (non-negative, summing to 1); sizes are
        ``floor(f * n)`` for train and val, the rest test (:func:`partition.tag_write.random_split`).
    site : site host name recorded in ``metadata.json`` (``source``/attribution).
    name : TAG name (default: ``site`` with dots replaced, minus ``.com``).
    source : ``metadata.json["source"]`` text (default: a description naming ``site``).
    verbose : print one progress line per file read or written.

    Returns
    -------
    dict with ``nodes`` ({ntype: rows}), ``edges`` ({relation file name: rows}, reverses
    included), ``dropped`` ({canonical relation: unresolved edges dropped}),
    ``dropped_nodes`` ({ntype: records left out}), ``accepted`` (has_answer edges with
    label 1), ``accepted_unresolved`` (AcceptedAnswerIds that name no answer of that
    question), ``link_pairs_merged``, ``users_in_dump`` and ``split`` sizes per labelled table.

    Raises
    ------
    FileNotFoundError
        ``dump_dir`` or one of the five XML files is missing (the message names the file).
    ValueError
        Malformed XML (message names file, line and column); a row lacking a required
        attribute or with a non-integer id (names file and row); duplicate ids; bad ``split``
        fractions; stale foreign Parquet files in ``out_dir``.
    """
    dump = Path(dump_dir)
    out = Path(out_dir)
    if not dump.is_dir():
        raise FileNotFoundError(f"Stack Exchange dump folder not found: {dump}")
    split = tuple(float(f) for f in split)
    if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1: {split}")
    files = {k: dump / f"{k}.xml" for k in ("Posts", "Users", "Tags", "Comments", "PostLinks")}
    for path in files.values():  # fail fast, before any parsing
        if not path.is_file():
            raise FileNotFoundError(f"Stack Exchange dump file not found: {path}")
    log: Callable[[str], None] = (lambda m: print(f"[stackexchange] {m}", flush=True)) if verbose \
        else (lambda m: None)

    def check_new(table: dict, key: int, path: Path, rowno: int) -> None:
        if key in table:
            raise ValueError(f"{path}: row {rowno} repeats Id={key}")

    # ---- Posts.xml: questions, answers, tag-wiki excerpts
    questions: Dict[int, dict] = {}
    answers: Dict[int, dict] = {}
    excerpts: Dict[int, str] = {}  # PostTypeId 4 bodies, by post id
    path = files["Posts"]
    for rowno, row in _iter_rows(path, verbose):
        pid = _require(row, "Id", path, rowno)
        ptype = _require(row, "PostTypeId", path, rowno)
        if ptype == 1:
            check_new(questions, pid, path, rowno)
            title = _normalise(row.get("Title", ""))
            body = html_to_text(row.get("Body"))
            questions[pid] = {
                "text": "\n".join(t for t in (title, body) if t),
                "owner": _int(row, "OwnerUserId", path, rowno),
                "accepted": _int(row, "AcceptedAnswerId", path, rowno),
                "tags": _TAG_RE.findall(row.get("Tags", "")),
            }
        elif ptype == 2:
            check_new(answers, pid, path, rowno)
            answers[pid] = {
                "text": html_to_text(row.get("Body")),
                "owner": _int(row, "OwnerUserId", path, rowno),
                "parent": _int(row, "ParentId", path, rowno),
            }
        elif ptype == 4:
            excerpts[pid] = html_to_text(row.get("Body"))

    # ---- Tags.xml
    tags: Dict[int, str] = {}
    tag_by_name: Dict[str, int] = {}
    path = files["Tags"]
    for rowno, row in _iter_rows(path, verbose):
        tid = _require(row, "Id", path, rowno)
        check_new(tags, tid, path, rowno)
        tname = _normalise(row.get("TagName", ""))
        if not tname:
            raise ValueError(f"{path}: row {rowno} (Id={tid}) has an empty TagName")
        excerpt = excerpts.get(_int(row, "ExcerptPostId", path, rowno) or -1, "")
        tags[tid] = f"{tname}\n{excerpt}" if excerpt else tname
        tag_by_name[tname] = tid

    # ---- Comments.xml (only comments on a question or an answer become nodes)
    comments: Dict[int, dict] = {}
    dropped_nodes: Dict[str, int] = {"comment": 0}
    dropped: Dict[str, int] = {rel_name(r): 0 for r in RELATIONS}
    # comments whose PostId is neither a question nor an answer (deleted post, tag wiki):
    # neither the comment node nor its comments_on edge can be built
    dropped["comment__comments_on__post"] = 0
    path = files["Comments"]
    for rowno, row in _iter_rows(path, verbose):
        cid = _require(row, "Id", path, rowno)
        check_new(comments, cid, path, rowno)
        post = _int(row, "PostId", path, rowno)
        text = _normalise(row.get("Text", ""))
        if post in questions:
            target = "question"
        elif post in answers:
            target = "answer"
        else:  # comment on a deleted post or on a tag wiki: no node, no edge
            dropped_nodes["comment"] += 1
            dropped["comment__comments_on__post"] += 1
            continue
        if not text:
            dropped_nodes["comment"] += 1
            continue
        comments[cid] = {"text": text, "post": post, "target": target,
                         "user": _int(row, "UserId", path, rowno)}

    # ---- Users.xml (kept: askers/answerers of kept posts, writers of kept comments)
    active = {p["owner"] for p in questions.values()} | {p["owner"] for p in answers.values()}
    active |= {c["user"] for c in comments.values()}
    users: Dict[int, str] = {}
    seen_users: set = set()
    path = files["Users"]
    for rowno, row in _iter_rows(path, verbose):
        uid = _require(row, "Id", path, rowno)
        if uid in seen_users:
            raise ValueError(f"{path}: row {rowno} repeats Id={uid}")
        seen_users.add(uid)
        if uid not in active:
            continue
        display = _normalise(row.get("DisplayName", "")) or f"user{uid}"
        about = html_to_text(row.get("AboutMe"))
        users[uid] = f"{display}\n{about}" if about else display
    users_in_dump = len(seen_users)
    dropped_nodes["user"] = users_in_dump - len(users)

    # ---- PostLinks.xml
    links: Dict[Tuple[int, int], int] = {}
    link_rows = 0
    merged = 0
    path = files["PostLinks"]
    for rowno, row in _iter_rows(path, verbose):
        src = _require(row, "PostId", path, rowno)
        dst = _require(row, "RelatedPostId", path, rowno)
        ltype = _require(row, "LinkTypeId", path, rowno)
        link_rows += 1
        if src not in questions or dst not in questions or ltype not in _LINK_TYPE:
            dropped["question__links__question"] += 1
            continue
        label = _LINK_TYPE[ltype]
        if (src, dst) in links:
            merged += 1
            label = max(label, links[(src, dst)])  # "duplicate" wins over "linked"
        links[(src, dst)] = label

    # ---- edges (pairs -> label or 0)
    edges: Dict[Tuple[str, str, str], Dict[Tuple[int, int], int]] = {r: {} for r in RELATIONS}
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

    # ---- tables
    node_texts = {"question": questions, "answer": answers, "tag": tags, "user": users,
                  "comment": comments}
    node_tables: Dict[str, pa.Table] = {}
    split_sizes: Dict[str, Dict[str, int]] = {}
    for ntype in NODE_TYPES:
        ids = sorted(node_texts[ntype])
        texts = [v if isinstance(v, str) else v["text"] for v in
                 (node_texts[ntype][i] for i in ids)]
        for i, t in zip(ids, texts):
            if not t.strip():
                raise ValueError(f"{ntype} id {i}: empty text after conversion")
        cols = {"id": pa.array(ids, pa.int64()), "text": pa.array(texts, pa.string())}
        if ntype == "question":
            answered = {q for (q, _a), y in edges[RELATIONS[0]].items() if y == 1}
            cols["label"] = pa.array([int(i in answered) for i in ids], pa.int64())
            codes = random_split(len(ids), split, seed)
            cols["split"] = split_strings(codes)
            split_sizes["question"] = {s: int((codes == i + 1).sum()) for i, s in enumerate(SPLITS)}
        node_tables[ntype] = pa.table(cols)

    edge_tables: Dict[str, pa.Table] = {}
    for rel in RELATIONS:
        src, dst, val = _edge_arrays(edges[rel])
        cols = {"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())}
        if rel in (RELATIONS[0], RELATIONS[5]):
            cols["label"] = pa.array(val, pa.int64())
        if rel in (RELATIONS[0], RELATIONS[1]):  # edge classification / link prediction
            codes = random_split(len(src), split, seed + 1 + RELATIONS.index(rel))
            cols["split"] = split_strings(codes)
            split_sizes[rel_name(rel)] = {s: int((codes == i + 1).sum())
                                          for i, s in enumerate(SPLITS)}
        edge_tables[rel_name(rel)] = pa.table(cols)
        edge_tables[rel_name(reverse_relation(rel))] = pa.table(
            {"src": pa.array(dst, pa.int64()), "dst": pa.array(src, pa.int64())})

    # ---- refuse to leave foreign tables next to ours (read_tag would load them)
    wanted = {out / "nodes" / f"{n}.parquet" for n in node_tables}
    wanted |= {out / "edges" / f"{e}.parquet" for e in edge_tables}
    stale = sorted(str(p) for sub in ("nodes", "edges") for p in (out / sub).glob("*.parquet")
                   if p not in wanted)
    if stale:
        raise ValueError(f"{out}: holds Parquet tables this conversion does not write: {stale}; "
                         "remove them or choose an empty output folder")

    for ntype, table in node_tables.items():
        write_parquet_atomic(table, out / "nodes" / f"{ntype}.parquet", compression="zstd")
        log(f"wrote nodes/{ntype}.parquet: {table.num_rows} rows")
    for ename, table in edge_tables.items():
        write_parquet_atomic(table, out / "edges" / f"{ename}.parquet", compression="zstd")
        log(f"wrote edges/{ename}.parquet: {table.num_rows} rows")

    accepted = int(sum(edges[RELATIONS[0]].values()))
    counts: Dict[str, object] = {
        "nodes": {n: t.num_rows for n, t in node_tables.items()},
        "edges": {e: t.num_rows for e, t in edge_tables.items()},
        "dropped": dropped,
        "dropped_nodes": dropped_nodes,
        "accepted": accepted,
        "accepted_unresolved": accepted_unresolved,
        "link_rows": link_rows,
        "link_pairs_merged": merged,
        "users_in_dump": users_in_dump,
        "split": split_sizes,
    }
    tag_name = name or re.sub(r"\W+", "_", site.removesuffix(".com")).strip("_").lower()
    meta = {
        "name": tag_name,
        "node_types": {n: {} for n in node_tables},
        "edge_types": {e: {} for e in edge_tables},
        "source": source or (
            f"Stack Exchange data dump of {site} (Posts, Users, Tags, Comments, PostLinks XML), "
            "converted by partition.converters.stackexchange"
        ),
        "license": LICENSE,
        "split": {"kind": "random", "seed": seed, "fractions": list(split),
                  "edge_seeds": {rel_name(RELATIONS[0]): seed + 1,
                                 rel_name(RELATIONS[1]): seed + 2}},
        "conversion": {k: counts[k] for k in ("dropped", "dropped_nodes", "accepted",
                                              "accepted_unresolved", "link_pairs_merged",
                                              "users_in_dump")},
    }
    meta["node_types"]["question"] = {"classes": QUESTION_CLASSES}
    meta["edge_types"][rel_name(RELATIONS[0])] = {"classes": ACCEPTED_CLASSES}
    meta["edge_types"][rel_name(RELATIONS[5])] = {"classes": LINK_CLASSES}
    write_json_atomic(out / "metadata.json", meta)
    log("wrote metadata.json; dropped unresolved edges: "
        + ", ".join(f"{k}={v}" for k, v in dropped.items()))
    return counts


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI: ``python -m partition.converters.stackexchange --dump DIR --out DIR``.

    Prints per-file progress and the counts (JSON). Returns 0; errors propagate as the
    exceptions documented in :func:`convert_stackexchange`.
    """
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dump", required=True, help="folder with the site's dump XML files")
    ap.add_argument("--out", required=True, help="TAG folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test fractions")
    ap.add_argument("--site", default=DEFAULT_SITE, help="site host name, for metadata")
    ap.add_argument("--name", default=None, help="TAG name (default: from --site)")
    args = ap.parse_args(argv)
    fractions = tuple(float(x) for x in args.split.split(","))
    counts = convert_stackexchange(args.dump, args.out, seed=args.seed, split=fractions,
                                   site=args.site, name=args.name)
    print(json.dumps(counts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
