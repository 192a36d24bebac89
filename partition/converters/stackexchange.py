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
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pyarrow as pa

from ..atomic import write_json_atomic, write_parquet_atomic
from .stackexchange_dump import html_to_text
from .stackexchange_graph import (
    NODE_TYPES,
    RELATIONS,
    build_edges,
    edge_tables,
    node_tables,
    rel_name,
    reverse_relation,
)
from .stackexchange_records import read_comments, read_links, read_posts, read_tags, read_users

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

    # ---- records, file by file (only comments on a kept question/answer are kept; users:
    # askers/answerers of kept posts, writers of kept comments)
    questions, answers, excerpts = read_posts(files["Posts"], verbose)
    tags, tag_by_name = read_tags(files["Tags"], excerpts, verbose)
    comments, on_no_post, empty_comments = read_comments(files["Comments"], questions, answers,
                                                         verbose)
    active = {p["owner"] for p in questions.values()} | {p["owner"] for p in answers.values()}
    active |= {c["user"] for c in comments.values()}
    users, users_in_dump = read_users(files["Users"], active, verbose)
    links, link_rows, unresolved_links, merged = read_links(files["PostLinks"], questions, verbose)

    # ---- edges and tables
    edges, dropped, accepted_unresolved = build_edges(questions, answers, tag_by_name, users,
                                                      comments, links)
    dropped["question__links__question"] += unresolved_links
    # comments whose PostId is neither a question nor an answer (deleted post, tag wiki):
    # neither the comment node nor its comments_on edge can be built
    dropped["comment__comments_on__post"] = on_no_post
    dropped_nodes = {"comment": on_no_post + empty_comments, "user": users_in_dump - len(users)}
    node_records = {"question": questions, "answer": answers, "tag": tags, "user": users,
                    "comment": comments}
    nodes, split_sizes = node_tables(node_records, edges[RELATIONS[0]], split, seed)
    edge_tabs, edge_split_sizes = edge_tables(edges, split, seed)
    split_sizes.update(edge_split_sizes)

    _refuse_stale(out, nodes, edge_tabs)
    _write_tables(out, nodes, edge_tabs, log)
    counts: Dict[str, object] = {
        "nodes": {n: t.num_rows for n, t in nodes.items()},
        "edges": {e: t.num_rows for e, t in edge_tabs.items()},
        "dropped": dropped,
        "dropped_nodes": dropped_nodes,
        "accepted": int(sum(edges[RELATIONS[0]].values())),
        "accepted_unresolved": accepted_unresolved,
        "link_rows": link_rows,
        "link_pairs_merged": merged,
        "users_in_dump": users_in_dump,
        "split": split_sizes,
    }
    write_json_atomic(out / "metadata.json",
                      _metadata(counts, nodes, edge_tabs, seed, split, site, name, source))
    log("wrote metadata.json; dropped unresolved edges: "
        + ", ".join(f"{k}={v}" for k, v in dropped.items()))
    return counts


def _refuse_stale(out: Path, nodes: Dict[str, pa.Table], edge_tabs: Dict[str, pa.Table]) -> None:
    """Refuse to leave foreign tables next to ours (read_tag would load them)."""
    wanted = {out / "nodes" / f"{n}.parquet" for n in nodes}
    wanted |= {out / "edges" / f"{e}.parquet" for e in edge_tabs}
    stale = sorted(str(p) for sub in ("nodes", "edges") for p in (out / sub).glob("*.parquet")
                   if p not in wanted)
    if stale:
        raise ValueError(f"{out}: holds Parquet tables this conversion does not write: {stale}; "
                         "remove them or choose an empty output folder")


def _write_tables(out: Path, nodes: Dict[str, pa.Table], edge_tabs: Dict[str, pa.Table],
                  log: Callable[[str], None]) -> None:
    for ntype, table in nodes.items():
        write_parquet_atomic(table, out / "nodes" / f"{ntype}.parquet", compression="zstd")
        log(f"wrote nodes/{ntype}.parquet: {table.num_rows} rows")
    for ename, table in edge_tabs.items():
        write_parquet_atomic(table, out / "edges" / f"{ename}.parquet", compression="zstd")
        log(f"wrote edges/{ename}.parquet: {table.num_rows} rows")


def _metadata(counts: Dict[str, object], nodes: Dict[str, pa.Table],
              edge_tabs: Dict[str, pa.Table], seed: int, split: Tuple[float, ...], site: str,
              name: Optional[str], source: Optional[str]) -> Dict[str, object]:
    """``metadata.json`` of the converted TAG (see :func:`convert_stackexchange`)."""
    tag_name = name or re.sub(r"\W+", "_", site.removesuffix(".com")).strip("_").lower()
    meta = {
        "name": tag_name,
        "node_types": {n: {} for n in nodes},
        "edge_types": {e: {} for e in edge_tabs},
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
    return meta


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


__all__: List[str] = [
    "DEFAULT_SITE", "LICENSE", "ACCEPTED_CLASSES", "QUESTION_CLASSES", "LINK_CLASSES",
    "RELATIONS", "NODE_TYPES", "reverse_relation", "rel_name", "html_to_text",
    "convert_stackexchange", "main",
]

if __name__ == "__main__":
    raise SystemExit(main())
