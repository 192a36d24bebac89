"""RGCN eq. (1), RGAT, DistMult + logistic loss eq. (2), against hand computations; the
layer-wise inference loop against mini-batch inference for both GNN encoders."""
from __future__ import annotations

import math

import dgl
import pytest
import torch

from lmgnn_dist.model import RGAT, RGCN, DistMultDecoder, RGATLayer, RGCNLayer, logistic_loss


def _set(layer: RGCNLayer, cetype, w):
    layer.relation_conv(cetype).weight.data.copy_(w)  # GraphConv computes h @ W


def test_rgcn_layer_matches_hand_computation_two_relations():
    # one node type, two relations; dst node 0 has 2 'cites' in-neighbours and 1 'similar'
    cites, similar = ("p", "cites", "p"), ("p", "similar", "p")
    g = dgl.heterograph({cites: ([1, 2], [0, 0]), similar: ([2], [0])}, num_nodes_dict={"p": 3})
    block = dgl.to_block(g, dst_nodes={"p": torch.tensor([0])})
    h_in = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.0, 3.0]])
    layer = RGCNLayer(2, 2, [cites, similar], activation=None)
    w_cites = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    w_sim = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    w0 = torch.tensor([[2.0, 0.0], [0.0, -1.0]])
    _set(layer, cites, w_cites)
    _set(layer, similar, w_sim)
    layer.self_loop.weight.data.copy_(w0.T)  # nn.Linear computes x @ weight.T
    layer.self_loop.bias.data.copy_(torch.tensor([0.5, -0.5]))
    src_ids = block.srcdata[dgl.NID]
    out = layer(block, {"p": h_in[src_ids]})["p"]
    # eq. (1) by hand: mean over each relation's neighbours, W_r, plus W_0 h_0 + b
    m_cites = ((h_in[1] + h_in[2]) / 2) @ w_cites        # (1, 2) @ W = (1, 4)
    m_sim = h_in[2] @ w_sim                                # (3, 0)
    self_term = h_in[0] @ w0 + torch.tensor([0.5, -0.5])   # (2.5, -0.5)
    expected = m_cites + m_sim + self_term
    assert torch.allclose(out, expected.unsqueeze(0))
    assert expected.tolist() == [1.0 + 3.0 + 2.5, 4.0 + 0.0 - 0.5]


def test_rgcn_layer_relu_and_zero_in_degree():
    rel = ("p", "cites", "p")
    g = dgl.heterograph({rel: ([0], [1])}, num_nodes_dict={"p": 2})
    block = dgl.to_block(g, dst_nodes={"p": torch.tensor([0, 1])})  # node 0 has no in-edge
    layer = RGCNLayer(1, 1, [rel], activation=torch.relu)
    _set(layer, rel, torch.tensor([[1.0]]))
    layer.self_loop.weight.data.fill_(-1.0)
    layer.self_loop.bias.data.zero_()
    h = {"p": torch.tensor([[2.0], [5.0]])[block.srcdata[dgl.NID]]}
    out = layer(block, h)["p"]
    # node 0: relu(-2) = 0 (self-loop only); node 1: relu(2 - 5) = 0; check pre-activation too
    assert out.tolist() == [[0.0], [0.0]]
    layer.activation = None
    assert layer(block, h)["p"].tolist() == [[-2.0], [2.0 - 5.0]]


def test_distmult_scores_match_hand_computation():
    rel = ("q", "tagged", "t")
    dec = DistMultDecoder([rel], 3)
    assert torch.allclose(dec.rel["q__tagged__t"], torch.full((3,), 1 / 3))
    dec.rel["q__tagged__t"].data = torch.tensor([1.0, 2.0, -1.0])
    hs = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 1.0]])
    hd = torch.tensor([[2.0, 0.5, 3.0], [1.0, 1.0, 1.0]])
    # s = sum_d hs_d * w_d * hd_d
    assert dec(hs, hd, rel).tolist() == [2.0 + 1.0 - 3.0, 0.0 + 4.0 - 1.0]
    neg = torch.stack([hd, hd.flip(0)], 1)  # [B=2, k=2, D]
    assert dec.score_negatives(hs, neg, rel).tolist() == [[0.0, 2.0], [3.0, 2.0 * 0.5 * 2 - 3.0]]


def test_logistic_loss_matches_eq2_by_hand():
    pos = torch.tensor([2.0, -1.0])
    neg = torch.tensor([[0.5, -3.0], [1.0, 0.0]])
    sig = lambda x: 1 / (1 + math.exp(-x))
    by_hand = -(math.log(sig(2.0)) + math.log(sig(-1.0))
                + math.log(1 - sig(0.5)) + math.log(1 - sig(-3.0))
                + math.log(1 - sig(1.0)) + math.log(1 - sig(0.0))) / 2
    assert logistic_loss(pos, neg).item() == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(ValueError):
        logistic_loss(torch.zeros(0), torch.zeros(0))


def test_lm_encoder_trains_no_pooler_and_saves_the_whole_model(tmp_path, tiny_bert_dir):
    """The pooler is never used ([CLS] of the last layer is): it is not among the trained
    parameters (DDP would find it without gradient), and save_pretrained writes it back
    unchanged so plain ``transformers`` loads a complete model."""
    from transformers import AutoModel

    from lmgnn_dist.model.lm import LMEncoder

    enc = LMEncoder(str(tiny_bert_dir))
    assert not any("pooler" in n for n, _ in enc.named_parameters())
    enc(torch.tensor([[101, 2000, 102]])).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())  # every parameter is used
    enc.save_pretrained(str(tmp_path / "lm"), tokenizer_source=str(tiny_bert_dir))
    saved = AutoModel.from_pretrained(tmp_path / "lm").state_dict()
    base = AutoModel.from_pretrained(tiny_bert_dir).state_dict()
    assert torch.equal(saved["pooler.dense.weight"], base["pooler.dense.weight"])
    assert enc.lm.pooler is None  # and training goes on without it


# ---- RGAT (per-relation GATConv, heads concatenated, + the self-loop term) -----------------

QA, AQ, QQ = ("q", "has", "a"), ("a", "of", "q"), ("q", "links", "q")


def _hetero_graph():
    """q (4 nodes) and a (3 nodes), three relations; q0 has no in-edge at all, every other
    node has >= 2 in-edges of some relation (so attention is not trivially 1)."""
    return dgl.heterograph({QA: ([0, 1, 2, 3, 1], [0, 0, 1, 2, 2]),
                            AQ: ([0, 1, 2, 0], [1, 1, 2, 3]),
                            QQ: ([0, 2, 3], [1, 3, 3])}, num_nodes_dict={"q": 4, "a": 3})


def _full_block(g):
    return dgl.to_block(g, {nt: torch.arange(g.num_nodes(nt)) for nt in g.ntypes})


def _inputs(g, dim, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {nt: torch.randn(g.num_nodes(nt), dim, generator=gen) for nt in g.ntypes}


def test_rgat_layer_matches_gat_by_hand_with_self_loop():
    """Every dst node: W_0 h_i + b + sum over relations of the concatenated heads of
    sum_j alpha_ij W h_j, alpha = softmax_j LeakyReLU(a_l.W h_j + a_r.W h_i); q0 (no in-edge)
    gets the self-loop term alone."""
    torch.manual_seed(0)
    g = _hetero_graph()
    block, h = _full_block(g), _inputs(g, 6)
    layer = RGATLayer(6, 8, 4, g.canonical_etypes, activation=None)
    out = layer(block, h)
    assert {nt: tuple(x.shape) for nt, x in out.items()} == {"q": (4, 8), "a": (3, 8)}
    expected = {nt: layer.self_loop(x).detach() for nt, x in h.items()}
    for c in g.canonical_etypes:
        conv, (src, dst) = layer.relation_conv(c), g.edges(etype=c)
        k, f = 4, 2
        ws, wd = conv.fc(h[c[0]]).view(-1, k, f), conv.fc(h[c[2]]).view(-1, k, f)
        e = torch.nn.functional.leaky_relu((ws[src] * conv.attn_l).sum(-1)
                                           + (wd[dst] * conv.attn_r).sum(-1), 0.2)  # [E, K]
        for i in dst.unique().tolist():
            on = dst == i
            alpha = torch.softmax(e[on], 0)                                      # [E_i, K]
            expected[c[2]][i] += (alpha.unsqueeze(-1) * ws[src[on]]).sum(0).flatten().detach()
    for nt in out:
        assert torch.allclose(out[nt], expected[nt], atol=1e-6), nt
    assert torch.equal(out["q"][0], layer.self_loop(h["q"])[0])  # no in-edge: self-loop only
    assert (out["q"][1:] - layer.self_loop(h["q"][1:])).abs().min() > 0  # messages arrived
    with pytest.raises(ValueError, match="divisible by num_heads 4"):
        RGATLayer(6, 10, 4, g.canonical_etypes)


def test_rgat_attention_weights_normalise_per_relation_and_head():
    torch.manual_seed(1)
    g = _hetero_graph()
    block, h = _full_block(g), _inputs(g, 6, seed=1)
    layer = RGATLayer(6, 8, 4, g.canonical_etypes)
    for c in g.canonical_etypes:
        rel = block[c]
        _, attn = layer.relation_conv(c)(rel, (h[c[0]], h[c[2]]), get_attention=True)
        assert attn.shape == (rel.num_edges(), 4, 1)
        _, dst = rel.edges()
        sums = torch.zeros(rel.num_dst_nodes(), 4).index_add_(0, dst, attn.squeeze(-1))
        has_in = torch.zeros(rel.num_dst_nodes(), dtype=torch.bool)
        has_in[dst] = True
        assert torch.allclose(sums[has_in], torch.ones(int(has_in.sum()), 4), atol=1e-6)
        assert torch.equal(sums[~has_in], torch.zeros(int((~has_in).sum()), 4))
        assert (attn > 0).all() and (attn < 1).any()  # not all single in-edges


def test_rgat_gradient_reaches_every_relation_and_layer():
    torch.manual_seed(2)
    g = _hetero_graph()
    block, h = _full_block(g), _inputs(g, 6, seed=2)
    enc = RGAT(6, 8, 2, g.canonical_etypes, dropout=0.0, num_heads=2)
    assert enc.out_dim == 8 and not enc.graph_free
    assert [(layer.in_dim, layer.out_dim) for layer in enc.layers] == [(6, 8), (8, 8)]
    out = enc([block, block], h)
    (out["q"].pow(2).sum() + out["a"].pow(2).sum()).backward()
    for layer in enc.layers:
        assert layer.self_loop.weight.grad.abs().sum() > 0
        for c in g.canonical_etypes:
            conv = layer.relation_conv(c)
            for name in ("fc.weight", "attn_l", "attn_r"):
                grad = dict(conv.named_parameters())[name].grad
                assert grad is not None and grad.abs().sum() > 0, (c, name)


@pytest.mark.parametrize("encoder", ["rgcn", "rgat"])
def test_layerwise_loop_equals_minibatch_full_neighbour_inference(encoder):
    """run_layers (what embed's layer-wise inference runs) over one-hop batches of 2 seeds
    gives every node the output of the 2-layer encoder on its full 2-hop neighbourhood."""
    from lmgnn_dist.data.dataloading import sample_blocks
    from lmgnn_dist.data.layerwise import run_layers
    from lmgnn_dist.model.joint import MLPEncoder

    torch.manual_seed(3)
    g = _hetero_graph()
    h = _inputs(g, 6, seed=3)
    cls = {"rgcn": RGCN, "rgat": RGAT}[encoder]
    enc = cls(6, 8, 2, g.canonical_etypes, 0.5).eval()  # eval: dropout off
    every = {nt: torch.arange(g.num_nodes(nt)) for nt in g.ntypes}

    def batches(nt, ids):
        for s in range(0, len(ids), 2):
            yield sample_blocks(g, {nt: ids[s:s + 2]}, [1], full_neighbors=True)

    layerwise = run_layers(enc, g.ntypes, h, every,
                           lambda i, nt, dim: torch.full((g.num_nodes(nt), dim), float("nan")),
                           batches)
    inp, seeds, blocks = sample_blocks(g, every, [-1, -1], full_neighbors=True)
    with torch.no_grad():
        minibatch = enc(blocks, {nt: h[nt][ids] for nt, ids in inp.items()})
    for nt in g.ntypes:
        assert layerwise[nt].shape == (g.num_nodes(nt), 8)
        assert torch.allclose(layerwise[nt][seeds[nt]], minibatch[nt], atol=1e-5), nt
    with pytest.raises(ValueError, match="graph-free"):
        run_layers(MLPEncoder(6, 8, 0.0), g.ntypes, h, every, None, batches)
