"""Joint negative sampling and back-prop on sampled nodes."""
from __future__ import annotations

import pytest
import torch

from lmgnn_dist.model.joint import mix_embeddings
from lmgnn_dist.model.lm import LMEncoder
from lmgnn_dist.data.sampling import joint_negative_sample, select_trainable_nodes


@pytest.mark.parametrize("n,k", [(8, 4), (5, 5), (16, 1)])
def test_joint_negatives_shapes_and_3n_node_count(n, k):
    gen = torch.Generator().manual_seed(0)
    neg = joint_negative_sample(n, k, num_dst_nodes=10_000, generator=gen)
    assert neg.neg_nodes.shape == (n,) and neg.pair_index.shape == (n, k)
    assert neg.negatives_of_positives().shape == (n, k)
    # each positive gets k distinct negatives from the shared pool
    for row in neg.pair_index:
        assert len(set(row.tolist())) == k
    assert neg.pair_index.min() >= 0 and neg.pair_index.max() < n
    # n*k negative pairs, but only n extra nodes: with n distinct sources/destinations the batch
    # encodes 3n end points, not 2n + k*n
    src, dst = torch.arange(n), torch.arange(n, 2 * n)
    endpoints = torch.cat([src, dst, neg.neg_nodes])
    assert len(endpoints) == 3 * n
    assert neg.negatives_of_positives().numel() == k * n
    assert set(neg.negatives_of_positives().flatten().tolist()) <= set(neg.neg_nodes.tolist())


def test_joint_negatives_errors_and_candidates():
    with pytest.raises(ValueError, match="k=5"):
        joint_negative_sample(4, 5, 10)
    cands = torch.tensor([7, 9])
    neg = joint_negative_sample(6, 2, 0, generator=torch.Generator().manual_seed(1), candidates=cands)
    assert set(neg.neg_nodes.tolist()) <= {7, 9}


def test_select_trainable_nodes_seeds_first_and_capped():
    gen = torch.Generator().manual_seed(0)
    tr, inf = select_trainable_nodes(num_input=50, num_seeds=8, max_trainable=12, generator=gen)
    assert len(tr) == 12 and len(inf) == 38
    assert set(range(8)) <= set(tr.tolist())          # all seeds trainable
    assert sorted(tr.tolist() + inf.tolist()) == list(range(50))
    # fewer slots than seeds: only seeds, no neighbours
    tr, inf = select_trainable_nodes(50, 8, 5, generator=gen)
    assert len(tr) == 5 and max(tr.tolist()) < 8
    # more slots than nodes
    tr, inf = select_trainable_nodes(6, 2, 100, generator=gen)
    assert tr.tolist() == list(range(6)) and len(inf) == 0


def test_backprop_reaches_lm_only_through_chosen_nodes(tiny_bert_dir):
    torch.manual_seed(0)
    lm = LMEncoder(str(tiny_bert_dir), pad_token_id=0)
    tokens = torch.randint(1000, 2000, (10, 8))
    tokens[:, 0] = 101
    train_idx, infer_idx = torch.tensor([0, 3, 4]), torch.tensor([1, 2, 5, 6, 7, 8, 9])
    calls = []
    lm.lm.register_forward_hook(lambda m, inp, out: calls.append(torch.is_grad_enabled()))
    h_train = lm(tokens[train_idx])
    h_infer = lm.encode_no_grad(tokens[infer_idx], batch_size=3)
    assert calls == [True, False, False, False]  # 1 with-grad pass, 3 no-grad sub-batches
    assert h_train.requires_grad and not h_infer.requires_grad
    h = mix_embeddings(h_train, train_idx, h_infer, infer_idx)
    assert h.shape == (10, lm.out_dim)
    assert torch.equal(h[infer_idx], h_infer) and torch.equal(h[train_idx], h_train)
    # a loss on inference nodes only gives the LM no gradient at all
    h[infer_idx].pow(2).sum().backward(retain_graph=True)
    assert all(p.grad is None or not p.grad.any() for p in lm.parameters())
    # a loss on trainable nodes reaches the LM, and the embedding-row gradient is exactly
    # that of the chosen tokens: rows of tokens never chosen get none
    h[train_idx].pow(2).sum().backward()
    word_grad = lm.lm.embeddings.word_embeddings.weight.grad
    assert word_grad.abs().sum() > 0
    chosen = set(tokens[train_idx].flatten().tolist())
    only_infer = set(tokens[infer_idx].flatten().tolist()) - chosen
    assert only_infer and all(not word_grad[t].any() for t in only_infer)
    assert all(word_grad[t].any() for t in chosen)


def test_encode_no_grad_equals_batched_forward(tiny_bert_dir):
    lm = LMEncoder(str(tiny_bert_dir), pad_token_id=0).eval()
    tokens = torch.zeros(7, 10, dtype=torch.long)
    for i in range(7):  # variable lengths: sorting + trimming must not change results
        tokens[i, :3 + i] = torch.arange(2000, 2003 + i)
    with torch.no_grad():
        ref = torch.cat([lm(tokens[i:i + 1]) for i in range(7)])
    got = lm.encode_no_grad(tokens, batch_size=3)
    assert torch.allclose(got, ref, atol=1e-5)


def test_policies_choose_exactly_their_definition():
    # hand-made block: 3 seeds (positions 0-2) and 7 sampled neighbours (positions 3-9)
    degrees = torch.tensor([1, 9, 2, 5, 0, 8, 3, 8, 1, 6])
    gen = torch.Generator().manual_seed(0)
    tr, inf = select_trainable_nodes(10, 3, 6, gen, policy="targets")
    assert tr.tolist() == [0, 1, 2] and inf.tolist() == list(range(3, 10))
    # degree: seeds, then neighbours with degree > 2 by degree (8, 8, 6 fill the 3 free slots;
    # the tie between positions 5 and 7 keeps position order)
    tr, _ = select_trainable_nodes(10, 3, 6, gen, policy="degree", degrees=degrees, deg_threshold=2)
    assert tr.tolist() == [0, 1, 2, 5, 7, 9]
    # a high threshold leaves slots empty rather than taking low-degree nodes
    tr, _ = select_trainable_nodes(10, 3, 6, gen, policy="degree", degrees=degrees, deg_threshold=7)
    assert tr.tolist() == [0, 1, 2, 5, 7]
    # random: seeds plus 3 distinct non-seeds
    tr, _ = select_trainable_nodes(10, 3, 6, gen, policy="random")
    assert tr[:3].tolist() == [0, 1, 2] and len(tr) == 6 and min(tr[3:].tolist()) >= 3
    with pytest.raises(ValueError, match="unknown trainable-node policy"):
        select_trainable_nodes(10, 3, 6, gen, policy="pagerank")
    with pytest.raises(ValueError, match="needs degrees"):
        select_trainable_nodes(10, 3, 6, gen, policy="degree")


def test_async_pipeline_equals_synchronous_path(tiny_bert_dir):
    from lmgnn_dist.data.subbatch import encode_pipelined

    lm = LMEncoder(str(tiny_bert_dir), pad_token_id=0)
    table = torch.zeros(40, 12, dtype=torch.int32)
    for i in range(40):
        table[i, :2 + i % 10] = torch.arange(1000 + i, 1002 + i + i % 10)
    fetched = []

    def fetch(ids):
        fetched.append(ids.clone())
        return table[ids]

    ids = torch.randperm(40, generator=torch.Generator().manual_seed(0))[:33]
    sync = encode_pipelined(lm, fetch, ids, batch_size=8, depth=0)
    order_sync = [f.tolist() for f in fetched]
    fetched.clear()
    for depth in (1, 3):
        got = encode_pipelined(lm, fetch, ids, batch_size=8, depth=depth)
        assert torch.equal(got, sync)
        assert [f.tolist() for f in fetched] == order_sync  # same sub-batches, same order
        fetched.clear()
    assert sync.shape == (33, lm.out_dim)
    # grouping rows differently (encode_no_grad sorts by length) only changes rounding
    assert torch.allclose(sync, lm.encode_no_grad(table[ids], 8), atol=1e-5)

    def broken(ids):
        raise KeyError("row 7 missing")

    with pytest.raises(KeyError, match="row 7 missing"):
        encode_pipelined(lm, broken, ids, batch_size=8, depth=1)


def test_encoder_sparse_rows_use_block_sparse_attention(tiny_bert_dir):
    from kernels import sparse_attention_enabled
    from lmgnn_dist.config import SparseAttentionConfig

    # [CLS] is a global query (it attends everywhere), so a sparse *last* layer leaves the
    # [CLS] output exactly dense: sparsity reaches it only through earlier layers. The tiny
    # BERT has 2 layers, so both are made sparse here.
    cfg = SparseAttentionConfig(enabled=True, block_size=4, first_dense_layers=0)
    lm = LMEncoder(str(tiny_bert_dir), pad_token_id=0, sparse=cfg).eval()
    tokens = torch.zeros(6, 16, dtype=torch.long)
    for i in range(6):
        tokens[i, :10 + i] = torch.arange(3000 + i, 3010 + 2 * i)
    sparse_rows = torch.tensor([True, False, True, False, False, True])
    got = lm.encode_no_grad(tokens, batch_size=4, sparse_rows=sparse_rows)
    dense = lm.encode_no_grad(tokens, batch_size=4)
    with torch.no_grad(), sparse_attention_enabled(lm.lm, 4, 0):
        sparse_ref = lm.encode_no_grad(tokens, batch_size=4)
    assert torch.allclose(got[~sparse_rows], dense[~sparse_rows], atol=1e-6)
    assert torch.allclose(got[sparse_rows], sparse_ref[sparse_rows], atol=1e-6)
    assert not torch.allclose(got[sparse_rows], dense[sparse_rows], atol=1e-3)  # it did change
    with pytest.raises(ValueError, match="no sparse settings"):
        LMEncoder(str(tiny_bert_dir), 0).encode_no_grad(tokens, 4, sparse_rows=sparse_rows)
