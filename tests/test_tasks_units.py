"""Task pieces against hand computations: metrics, the eq. (3) edge classifier, uniform
negatives, trainable nodes over several types, training-target exclusion in blocks, encoder
resolution and task config checks."""
from __future__ import annotations

import dgl
import pytest
import torch

from lmgnn_dist.config import ConfigError, load_config
from lmgnn_dist.data.dataloading import drop_edges_between
from lmgnn_dist.tasks.metrics import (classification_metrics, confusion_matrix, ranking_metrics,
                                ranking_sums)
from lmgnn_dist.model import EdgeClassifier
from lmgnn_dist.data.node_inputs import resolve_encoders
from lmgnn_dist.data.sampling import select_trainable_nodes_hetero, uniform_negative_sample


def test_classification_metrics_by_hand():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    pred = torch.tensor([0, 0, 1, 1, 0, 0])
    conf = confusion_matrix(pred, target, 3)
    assert conf.tolist() == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]
    m = classification_metrics(conf, ["a", "b", "c"])
    # class a: TP 2, FP 2, FN 1 -> 4/7; b: TP 1, FP 1, FN 1 -> 1/2; c: TP 0 -> 0
    assert m["acc"] == pytest.approx(3 / 6)
    assert m["f1_per_class"] == pytest.approx({"a": 4 / 7, "b": 0.5, "c": 0.0})
    assert m["macro_f1"] == pytest.approx((4 / 7 + 0.5 + 0.0) / 3)
    assert m["support"] == {"a": 3, "b": 2, "c": 1}


def test_ranking_metrics_by_hand():
    pos = torch.tensor([5.0, 1.0, 2.0])
    neg = torch.tensor([[1.0, 2.0, 9.0], [3.0, 4.0, 0.0], [2.0, 0.0, 7.0]])
    valid = torch.tensor([[True, True, False], [True, True, True], [True, True, True]])
    # ranks: edge 0: 1 (the 9 is padding); edge 1: 3 (two above); edge 2: 1 above + 1 tie -> 2.5
    sums = ranking_sums(pos, neg, valid)
    m = ranking_metrics(sums)
    assert m["num_edges"] == 3
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2.5) / 3)
    assert m["hits@1"] == pytest.approx(1 / 3) and m["hits@10"] == 1.0
    # sums add across trainers
    assert ranking_metrics(sums + sums)["mrr"] == pytest.approx(m["mrr"])


def test_edge_classifier_is_eq3():
    dec = EdgeClassifier(2, 3)
    w = torch.arange(12, dtype=torch.float32).view(3, 4)
    dec.linear.weight.data.copy_(w)
    dec.linear.bias.data.copy_(torch.tensor([1.0, 0.0, -1.0]))
    hu, hv = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, -1.0]])
    # W_ec [h_u || h_v] + b with [h_u || h_v] = (1, 2, 0, -1)
    want = torch.tensor([[0 + 2 + 0 - 3 + 1, 4 + 10 + 0 - 7 + 0, 8 + 18 + 0 - 11 - 1]])
    assert torch.equal(dec(hu, hv), want.float())


def test_uniform_negatives_are_k_fresh_nodes_per_positive():
    neg = uniform_negative_sample(5, 3, 100, generator=torch.Generator().manual_seed(0))
    assert neg.neg_nodes.shape == (15,) and neg.pair_index.tolist() == torch.arange(15).view(5, 3).tolist()
    assert neg.negatives_of_positives().shape == (5, 3)
    with pytest.raises(ValueError):
        uniform_negative_sample(0, 3, 10)


def test_trainable_nodes_over_types_seeds_first_one_budget():
    gen = torch.Generator().manual_seed(0)
    out = select_trainable_nodes_hetero({"q": 6, "t": 4}, {"q": 2, "t": 1}, 5, gen, "targets")
    assert out["q"][0].tolist() == [0, 1] and out["t"][0].tolist() == [0]  # all seeds, nothing else
    assert out["q"][1].tolist() == [2, 3, 4, 5] and out["t"][1].tolist() == [1, 2, 3]
    deg = {"q": torch.tensor([0, 0, 9, 1, 7, 0]), "t": torch.tensor([0, 8, 2, 0])}
    out = select_trainable_nodes_hetero({"q": 6, "t": 4}, {"q": 2, "t": 1}, 5, gen, "degree",
                                        degrees=deg, deg_threshold=1)
    # seeds (3), then the highest-degree others over both types: q#2 (9), t#1 (8)
    assert out["q"][0].tolist() == [0, 1, 2] and out["t"][0].tolist() == [0, 1]
    out = select_trainable_nodes_hetero({"q": 6, "t": 4}, {"q": 2, "t": 1}, 7, gen, "random")
    assert sum(len(v[0]) for v in out.values()) == 7
    for nt, n in (("q", 6), ("t", 4)):
        assert sorted(torch.cat(out[nt]).tolist()) == list(range(n))


def test_drop_edges_between_removes_targets_and_reverses():
    c, r = ("q", "tagged", "t"), ("t", "rev", "q")
    g = dgl.heterograph({c: ([0, 0, 1, 2], [0, 1, 1, 0]), r: ([0, 1, 1, 0], [0, 0, 1, 2])})
    block = dgl.to_block(g, {"q": torch.tensor([0, 1, 2]), "t": torch.tensor([0, 1])})
    assert block.num_edges(c) == 4 and block.num_edges(r) == 4
    # exclude the positive (q0 -> t1) and its reverse (t1 -> q0)
    (b,) = drop_edges_between([block], {c: (torch.tensor([0]), torch.tensor([1])),
                                        r: (torch.tensor([1]), torch.tensor([0]))},
                              {"q": 3, "t": 2})
    def pairs(blk, cet):
        s, d = blk.edges(etype=cet)
        return sorted(zip(blk.srcnodes[cet[0]].data[dgl.NID][s].tolist(),
                          blk.dstnodes[cet[2]].data[dgl.NID][d].tolist()))
    assert pairs(b, c) == [(0, 0), (1, 1), (2, 0)] and pairs(b, r) == [(0, 0), (0, 2), (1, 1)]
    assert b.num_src_nodes("q") == block.num_src_nodes("q") and b.is_block
    assert sorted(b.edges[c].data[dgl.EID].tolist()) == [0, 2, 3]  # graph edge ids kept


def test_resolve_encoders():
    meta = {"ntypes": {"q": {"has_text": True}, "t": {"has_text": True}, "u": {"has_text": False}}}
    lm_of, paths, emb = resolve_encoders({"t": "/models/tag-bert"}, "base", meta)
    assert lm_of == {"q": "shared", "t": "own_t"} and emb == ["u"]
    assert paths == {"shared": "base", "own_t": "/models/tag-bert"}
    lm_of, _, emb = resolve_encoders({"q": "embedding"}, "base", meta)
    assert lm_of == {"t": "shared"} and emb == ["q", "u"]
    with pytest.raises(ValueError, match="model.encoders.u='shared', but node type 'u' has no text"):
        resolve_encoders({"u": "shared"}, "base", meta)
    with pytest.raises(ValueError, match=r"names node type\(s\) \['x'\]"):
        resolve_encoders({"x": "shared"}, "base", meta)


@pytest.mark.parametrize("overrides,message", [
    (["task.kind=regression"], "task.kind must be one of"),
    (["task.kind=link_prediction"], "needs task.target_etype"),
    (["task.kind=edge_classification", "task.target_etype=q__a"], "must look like src__etype__dst"),
    (["task.negative_sampler=hard"], "negative_sampler must be joint|uniform"),
    (["model.encoders={a: 1}"], r"model.encoders.a: expected str"),
])
def test_task_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_task_config_round_trip():
    cfg = load_config(None, ["task.kind=link_prediction", "task.target_etype=q__tagged__t",
                             "task.negative_sampler=uniform", "model.encoders={u: embedding}"])
    assert cfg.task.target_etype == "q__tagged__t" and cfg.model.encoders == {"u": "embedding"}


def test_eval_metric_selects_the_primary_metric():
    from types import SimpleNamespace

    from lmgnn_dist.tasks import make_task

    g = SimpleNamespace(ntypes=["q"])
    meta = {"ntypes": {"q": {"classes": ["a", "b"], "has_split": True}}}
    cfg = load_config(None, ["task.target_ntype=q"])
    assert make_task(cfg, g, meta).primary == "acc"
    cfg = load_config(None, ["task.target_ntype=q", "task.eval_metric=macro_f1"])
    assert make_task(cfg, g, meta).primary == "macro_f1"
    cfg = load_config(None, ["task.target_ntype=q", "task.eval_metric=mrr"])
    with pytest.raises(ValueError, match=r"task.eval_metric='mrr' is not a metric of "
                                         r"node_classification; choose one of \['acc', 'macro_f1'\]"):
        make_task(cfg, g, meta)
