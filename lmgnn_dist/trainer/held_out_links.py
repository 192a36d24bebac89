"""Stage 1's validation: held-out edges ranked by the LMs + DistMult (MRR, hits@k).

Before link-prediction training starts, each trainer sets aside ``stage1.val_edges`` of its
edges (spread over the relations by their share of its edges, at most a tenth of any
relation's), which training then never
samples, and draws ``stage1.val_negatives`` fixed negative nodes per relation. Validation
encodes the held-out end points and the negatives without gradient and ranks every positive
against all the negatives of its relation (OGB-style ties, :func:`~lmgnn_dist.tasks.metrics.
ranking_sums`), summed over the trainers.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

from partition.etypes import CanonicalEtype

from ..dist_init import all_reduce
from ..tasks.metrics import HITS_AT, ranking_metrics, ranking_sums
from ..data.node_inputs import gather_tokens


class HeldOutLinks:
    """This trainer's held-out edges of each relation and the fixed negatives they are ranked
    against.

    Parameters
    ----------
    local_edges : relation -> int64 edge ids of this trainer's share.
    n : held-out edges in all (0: none), at most a tenth of each relation's, and each relation
        keeps at least ``keep`` for training.
    num_negatives : negative destination nodes per relation.
    num_nodes : ntype -> number of nodes.
    gen : the trainer's generator (the choice depends on seed, rank and stage only).
    keep : edges of a relation that stay for training at least (its batch size).

    Attributes
    ----------
    train : relation -> edge ids left for training; ``val``: relation -> held-out edge ids;
    negatives : relation -> int64 ``[num_negatives]`` destination-type node ids.
    """

    def __init__(self, local_edges: Dict[CanonicalEtype, torch.Tensor], n: int,
                 num_negatives: int, num_nodes: Callable[[str], int], gen: torch.Generator,
                 keep: int = 1):
        total = sum(len(e) for e in local_edges.values())
        self.train, self.val, self.negatives = {}, {}, {}
        for c, e in local_edges.items():
            k = min(int(round(n * len(e) / total)) if total else 0, len(e) // 10,
                    max(0, len(e) - keep))
            perm = torch.randperm(len(e), generator=gen)
            self.val[c], self.train[c] = e[perm[:k]], e[perm[k:]]
            self.negatives[c] = torch.randint(0, num_nodes(c[2]), (num_negatives,),
                                              generator=gen)

    def __len__(self) -> int:
        return sum(len(v) for v in self.val.values())

    @torch.no_grad()
    def evaluate(self, find_edges: Callable, encode: Callable[[str, torch.Tensor], torch.Tensor],
                 decoder) -> Dict[str, float]:
        """``{"mrr", "hits@1", "hits@10", "num_edges"}`` over every trainer's held-out edges
        (collective: every trainer calls it, with or without edges of its own).

        ``find_edges(eids, etype)`` -> ``(src, dst)``; ``encode(ntype, ids)`` -> float
        ``[len(ids), D]`` no-grad LM embeddings, called once per node type with the unique
        end points and negatives; ``decoder``: the DistMult decoder. A negative equal to the
        positive's own destination is left out of its ranking.
        """

        sums = torch.zeros(2 + len(HITS_AT), dtype=torch.float64)
        for c, eids in self.val.items():
            if not len(eids):
                continue
            src, dst = find_edges(eids, c)
            neg = self.negatives[c]
            dev = next(decoder.parameters()).device
            emb, rows = gather_tokens(encode, [(c[0], src), (c[2], dst), (c[2], neg)])
            h_src, h_dst, h_neg = (emb[nt][r].to(dev) for nt, r in zip((c[0], c[2], c[2]), rows))
            pos = decoder(h_src, h_dst, c)
            scores = decoder.score_negatives(h_src, h_neg.unsqueeze(0).expand(len(src), -1, -1),
                                             c)
            valid = neg.unsqueeze(0) != dst.unsqueeze(1)
            sums += ranking_sums(pos.float().cpu(), scores.float().cpu(), valid)
        return ranking_metrics(all_reduce(sums))
