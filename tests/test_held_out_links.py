"""Stage 1's held-out link validation (:class:`HeldOutLinks`) without a DistDGL job."""
import pytest
import torch

from lmgnn_dist.model.decoders import DistMultDecoder
from lmgnn_dist.trainer.held_out_links import HeldOutLinks

R1, R2 = ("paper", "cites", "paper"), ("paper", "rev_cites", "paper")


def test_held_out_edges_are_disjoint_from_training_and_spread_by_share():
    edges = {R1: torch.arange(1000), R2: torch.arange(1000, 1300)}
    h = HeldOutLinks(edges, 130, 7, lambda nt: 50, torch.Generator().manual_seed(0), keep=8)
    assert len(h.val[R1]) == 100 and len(h.val[R2]) == 30 and len(h) == 130
    for c in edges:
        both = torch.cat([h.val[c], h.train[c]])
        assert torch.equal(both.sort().values, edges[c])  # a partition of the edges
        assert len(h.negatives[c]) == 7 and int(h.negatives[c].max()) < 50
    # at most a tenth of a relation, and never below `keep` training edges
    small = HeldOutLinks({R1: torch.arange(30)}, 256, 5, lambda nt: 50, torch.Generator(), keep=8)
    assert len(small.val[R1]) == 3 and len(small.train[R1]) == 27
    assert len(HeldOutLinks(edges, 0, 5, lambda nt: 50, torch.Generator())) == 0
    again = HeldOutLinks(edges, 130, 7, lambda nt: 50, torch.Generator().manual_seed(0), keep=8)
    assert torch.equal(again.val[R1], h.val[R1])  # same generator state, same choice


def test_mrr_ranks_each_positive_against_the_fixed_negatives(one_process_group):
    """One-hot embeddings: node i = e_i. With DistMult weights 1, score(i, j) = [i == j], so
    an edge i->i ranks first (negatives score 0, except a negative equal to i, left out) and
    an edge i->j (i != j) ties with every other negative scoring 0 (OGB ties: averaged)."""
    n = 6
    h = HeldOutLinks({R1: torch.arange(4)}, 4, 3, lambda nt: n, torch.Generator(), keep=0)
    h.val = {R1: torch.arange(4)}
    h.negatives = {R1: torch.tensor([0, 4, 5])}
    src = torch.tensor([0, 1, 2, 3])
    dst = torch.tensor([0, 1, 5, 3])  # three self-matches, edge 2->5 is a miss
    dec = DistMultDecoder([R1], n)
    with torch.no_grad():
        for p in dec.parameters():
            p.fill_(1.0)
    eye = torch.eye(n)
    asked = []

    def encode(nt, ids):
        asked.append(ids.tolist())
        return eye[ids]

    out = h.evaluate(lambda eids, c: (src[eids], dst[eids]), encode, dec)
    assert asked == [[0, 1, 2, 3, 4, 5]]  # one encode of the unique end points and negatives
    # 0->0: negative 0 is the positive itself (left out); 4, 5 score 0 < 1: rank 1.
    # 1->1, 3->3: rank 1. 2->5: pos 0; negatives 0, 4 score 0 (ties), 5 is the positive itself
    # (left out): rank 1 + 2/2 = 2.
    assert out["num_edges"] == 4
    assert out["mrr"] == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert out["hits@1"] == pytest.approx(3 / 4) and out["hits@10"] == 1.0
