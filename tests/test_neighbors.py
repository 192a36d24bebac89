"""The trainer-side seeded neighbour sampler (lmgnn_dist.data.neighbors) on in-memory DGL
graphs: what it keeps, that a generator state reproduces it, that the order edges arrive in
does not matter, and that full neighbourhoods are DGL's."""
from __future__ import annotations

import torch

from lmgnn_dist.data.neighbors import SeededNeighborSampler, canonical_order, choose_in_edges


def _graph():
    """A graph of one node type and two relations, 120 random edges."""
    import dgl

    gen = torch.Generator().manual_seed(0)
    src = torch.randint(0, 20, (120,), generator=gen)
    dst = torch.randint(0, 20, (120,), generator=gen)
    data = {("p", "cites", "p"): (src[:80], dst[:80]), ("p", "likes", "p"): (src[80:], dst[80:])}
    return dgl.heterograph(data)


def test_choose_in_edges_keeps_min_degree_fanout_per_destination_uniformly():
    dst = torch.tensor([0] * 10 + [1] * 2 + [2] * 5)
    counts = torch.zeros(17)
    for s in range(400):
        kept = choose_in_edges(dst, 3, torch.Generator().manual_seed(s))
        assert torch.bincount(dst[kept], minlength=3).tolist() == [3, 2, 3]
        assert torch.equal(kept, torch.sort(kept).values) and len(set(kept.tolist())) == len(kept)
        counts[kept] += 1
    # each of destination 0's ten edges kept with probability 3/10 (400 draws: 120 +- ~28)
    assert (counts[:10] - 120).abs().max() < 40 and (counts[10:12] == 400).all()
    assert len(choose_in_edges(dst, 0, None)) == 0 and torch.equal(choose_in_edges(dst, -1, None),
                                                                    torch.arange(17))


def test_canonical_order_sorts_by_destination_then_edge_id():
    dst, eid = torch.tensor([2, 0, 2, 0]), torch.tensor([7, 9, 3, 1])
    order = canonical_order(dst, eid)
    assert dst[order].tolist() == [0, 0, 2, 2] and eid[order].tolist() == [1, 9, 3, 7]


def test_same_generator_state_same_blocks_and_fanouts_hold_per_relation():
    import dgl

    g = _graph()
    seeds = {"p": torch.tensor([0, 3, 5, 7])}
    runs = [SeededNeighborSampler([3, 2], torch.Generator().manual_seed(5)).sample_blocks(g, seeds)
            for _ in range(2)]
    other = SeededNeighborSampler([3, 2], torch.Generator().manual_seed(6)).sample_blocks(g, seeds)
    (inp_a, out_a, blocks_a), (inp_b, _, blocks_b) = runs
    # one node type: DGL gives the input nodes as a tensor (normalize_batch dict-ifies them)
    assert torch.equal(inp_a, inp_b) and torch.equal(out_a["p"], seeds["p"])
    for a, b in zip(blocks_a, blocks_b):
        for c in a.canonical_etypes:
            assert torch.equal(a.edges[c].data[dgl.EID], b.edges[c].data[dgl.EID])
            assert all(torch.equal(x, y) for x, y in zip(a.edges(etype=c), b.edges(etype=c)))
    last = blocks_a[-1]
    for c in last.canonical_etypes:  # at most 2 in-edges of each relation per output node
        assert torch.bincount(last.edges(etype=c)[1], minlength=4).max() <= 2
    assert any(not torch.equal(a.edges[c].data[dgl.EID], b.edges[c].data[dgl.EID])
               for a, b in zip(blocks_a, other[2]) for c in a.canonical_etypes)


def test_full_neighbourhoods_are_dgls_and_need_no_generator():
    import dgl

    g = _graph()
    seeds = {"p": torch.tensor([1, 2, 4])}
    _, _, ours = SeededNeighborSampler([-1]).sample_blocks(g, seeds)
    _, _, theirs = dgl.dataloading.MultiLayerFullNeighborSampler(1).sample_blocks(g, seeds)
    for c in g.canonical_etypes:
        a = sorted(ours[0].edges[c].data[dgl.EID].tolist())
        assert a == sorted(theirs[0].edges[c].data[dgl.EID].tolist())
        assert a == sorted(g.in_edges(seeds["p"], form="eid", etype=c).tolist())
