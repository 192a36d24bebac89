"""RGCN eq. (1), DistMult + logistic loss eq. (2), against hand computations."""
from __future__ import annotations

import math

import dgl
import pytest
import torch

from lmgnn_dist.model import DistMultDecoder, RGCNLayer, logistic_loss


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
