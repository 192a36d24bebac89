"""Per-file readers of a Stack Exchange dump: each of ``Posts.xml``, ``Tags.xml``,
``Comments.xml``, ``Users.xml`` and ``PostLinks.xml`` turned into the records the converter
keeps (questions, answers, tag-wiki excerpts, tags, comments, users, question links), with
counts of the rows left out. Duplicate ids fail with a message naming file and row. Used by
:func:`partition.converters.stackexchange.convert_stackexchange`.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

from .stackexchange_dump import html_to_text, int_attr, iter_rows, normalise, require_attr

_LINK_TYPE = {1: 0, 3: 1}  # PostLinks.LinkTypeId -> label
_TAG_RE = re.compile(r"<([^<>]+)>")


def _check_new(table: dict, key: int, path: Path, rowno: int) -> None:
    if key in table:
        raise ValueError(f"{path}: row {rowno} repeats Id={key}")


def read_posts(path: Path,
               verbose: bool) -> Tuple[Dict[int, dict], Dict[int, dict], Dict[int, str]]:
    """``Posts.xml`` -> ``(questions, answers, excerpts)`` by post id.

    A question (PostTypeId 1) is ``{text: title + "\\n" + body text, owner, accepted, tags}``,
    an answer (2) ``{text: body text, owner, parent}``, an excerpt (4, a tag wiki's excerpt)
    its body text; other post types are skipped.
    """
    questions: Dict[int, dict] = {}
    answers: Dict[int, dict] = {}
    excerpts: Dict[int, str] = {}  # PostTypeId 4 bodies, by post id
    for rowno, row in iter_rows(path, verbose):
        pid = require_attr(row, "Id", path, rowno)
        ptype = require_attr(row, "PostTypeId", path, rowno)
        if ptype == 1:
            _check_new(questions, pid, path, rowno)
            title = normalise(row.get("Title", ""))
            body = html_to_text(row.get("Body"))
            questions[pid] = {
                "text": "\n".join(t for t in (title, body) if t),
                "owner": int_attr(row, "OwnerUserId", path, rowno),
                "accepted": int_attr(row, "AcceptedAnswerId", path, rowno),
                "tags": _TAG_RE.findall(row.get("Tags", "")),
            }
        elif ptype == 2:
            _check_new(answers, pid, path, rowno)
            answers[pid] = {
                "text": html_to_text(row.get("Body")),
                "owner": int_attr(row, "OwnerUserId", path, rowno),
                "parent": int_attr(row, "ParentId", path, rowno),
            }
        elif ptype == 4:
            excerpts[pid] = html_to_text(row.get("Body"))
    return questions, answers, excerpts


def read_tags(path: Path, excerpts: Dict[int, str],
              verbose: bool) -> Tuple[Dict[int, str], Dict[str, int]]:
    """``Tags.xml`` -> ``(tags, tag_by_name)``: tag id -> TagName [+ "\\n" + its excerpt's
    text], and TagName -> tag id. An empty TagName is a ValueError."""
    tags: Dict[int, str] = {}
    tag_by_name: Dict[str, int] = {}
    for rowno, row in iter_rows(path, verbose):
        tid = require_attr(row, "Id", path, rowno)
        _check_new(tags, tid, path, rowno)
        tname = normalise(row.get("TagName", ""))
        if not tname:
            raise ValueError(f"{path}: row {rowno} (Id={tid}) has an empty TagName")
        excerpt = excerpts.get(int_attr(row, "ExcerptPostId", path, rowno) or -1, "")
        tags[tid] = f"{tname}\n{excerpt}" if excerpt else tname
        tag_by_name[tname] = tid
    return tags, tag_by_name


def read_comments(path: Path, questions: Dict[int, dict], answers: Dict[int, dict],
                  verbose: bool) -> Tuple[Dict[int, dict], int, int]:
    """``Comments.xml`` -> ``(comments, on_no_post, empty)``.

    Only comments on a question or an answer become records ``{text, post, target, user}``
    (``target``: ``"question"`` or ``"answer"``); ``on_no_post`` counts comments on a post that
    is neither (a deleted post, a tag wiki), ``empty`` those left with no text.
    """
    comments: Dict[int, dict] = {}
    on_no_post = empty = 0
    for rowno, row in iter_rows(path, verbose):
        cid = require_attr(row, "Id", path, rowno)
        _check_new(comments, cid, path, rowno)
        post = int_attr(row, "PostId", path, rowno)
        text = normalise(row.get("Text", ""))
        if post in questions:
            target = "question"
        elif post in answers:
            target = "answer"
        else:  # comment on a deleted post or on a tag wiki: no node, no edge
            on_no_post += 1
            continue
        if not text:
            empty += 1
            continue
        comments[cid] = {"text": text, "post": post, "target": target,
                         "user": int_attr(row, "UserId", path, rowno)}
    return comments, on_no_post, empty


def read_users(path: Path, active: Set[int], verbose: bool) -> Tuple[Dict[int, str], int]:
    """``Users.xml`` -> ``(users, users_in_dump)``: user id -> DisplayName (``user<id>`` if
    empty) [+ "\\n" + AboutMe text] for the ``active`` users only, and the number of users
    in the file (every Id is checked for repeats)."""
    users: Dict[int, str] = {}
    seen_users: set = set()
    for rowno, row in iter_rows(path, verbose):
        uid = require_attr(row, "Id", path, rowno)
        if uid in seen_users:
            raise ValueError(f"{path}: row {rowno} repeats Id={uid}")
        seen_users.add(uid)
        if uid not in active:
            continue
        display = normalise(row.get("DisplayName", "")) or f"user{uid}"
        about = html_to_text(row.get("AboutMe"))
        users[uid] = f"{display}\n{about}" if about else display
    return users, len(seen_users)


def read_links(path: Path, questions: Dict[int, dict],
               verbose: bool) -> Tuple[Dict[Tuple[int, int], int], int, int, int]:
    """``PostLinks.xml`` -> ``(links, link_rows, unresolved, merged)``.

    ``links``: ``{(PostId, RelatedPostId): label}`` between questions, label 0 for LinkTypeId 1
    ("linked"), 1 for 3 ("duplicate"); a pair listed again is merged into one (``merged``
    counts them), "duplicate" winning. ``unresolved``: rows naming a post that is not a question,
    or another link type.
    """
    links: Dict[Tuple[int, int], int] = {}
    link_rows = unresolved = merged = 0
    for rowno, row in iter_rows(path, verbose):
        src = require_attr(row, "PostId", path, rowno)
        dst = require_attr(row, "RelatedPostId", path, rowno)
        ltype = require_attr(row, "LinkTypeId", path, rowno)
        link_rows += 1
        if src not in questions or dst not in questions or ltype not in _LINK_TYPE:
            unresolved += 1
            continue
        label = _LINK_TYPE[ltype]
        if (src, dst) in links:
            merged += 1
            label = max(label, links[(src, dst)])  # "duplicate" wins over "linked"
        links[(src, dst)] = label
    return links, link_rows, unresolved, merged


__all__: List[str] = ["read_posts", "read_tags", "read_comments", "read_users", "read_links"]
