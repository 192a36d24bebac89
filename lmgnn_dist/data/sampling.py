"""Samplers of the LM-GNN efficiency recipe: joint (and uniform) negatives and trainable-node
selection.

Both work on plain id tensors so they are testable without a cluster; the stage code feeds
them ids from ``DistGraph``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch


@dataclass
class JointNegatives:
    """Output of :func:`joint_negative_sample` and :func:`uniform_negative_sample`.

    Attributes
    ----------
    neg_nodes : int64 ``[m]`` node ids (of the destination type): ``m = n`` shared by the
        batch (joint), ``m = n * k`` (uniform).
    pair_index : int64 ``[n, k]``: positive ``i`` is scored against
        ``neg_nodes[pair_index[i]]``.
    """

    neg_nodes: torch.Tensor
    pair_index: torch.Tensor

    def negatives_of_positives(self) -> torch.Tensor:
        """int64 ``[n, k]`` negative node ids per positive."""
        return self.neg_nodes[self.pair_index]


def joint_negative_sample(num_pos: int, k: int, num_dst_nodes: int,
                          generator: Optional[torch.Generator] = None,
                          candidates: Optional[torch.Tensor] = None) -> JointNegatives:
    """Joint negative sampling (LM-GNN §3.2): ``n`` extra nodes for ``n`` positives, paired ``k`` ways.

    Instead of ``k`` fresh negatives per positive (``k*n`` extra nodes to encode with the LM),
    the batch draws ``n`` negative nodes uniformly and corrupts positive ``i``'s destination
    with ``k`` distinct ones of them: the batch encodes at most ``3n`` end points (``n``
    sources, ``n`` destinations, ``n`` negatives) while still giving ``k*n`` negative pairs.

    Parameters
    ----------
    num_pos : ``n``, positives in the batch.
    k : negatives per positive, ``1 <= k <= n``.
    num_dst_nodes : negatives are drawn from ``[0, num_dst_nodes)`` ...
    candidates : ... or from this int64 id tensor when given.

    Returns
    -------
    JointNegatives with ``neg_nodes`` ``[n]`` and ``pair_index`` ``[n, k]`` (row ``i`` holds k
    distinct indices into ``neg_nodes``).

    Raises
    ------
    ValueError if ``k`` is outside ``[1, n]`` or there is nothing to sample from.
    """
    if num_pos < 1:
        raise ValueError("joint_negative_sample needs at least one positive")
    if not 1 <= k <= num_pos:
        raise ValueError(f"k={k} negatives per positive must be in [1, n={num_pos}]")
    if candidates is None:
        if num_dst_nodes < 1:
            raise ValueError("no destination nodes to sample negatives from")
        neg = torch.randint(0, num_dst_nodes, (num_pos,), generator=generator)
    else:
        if len(candidates) == 0:
            raise ValueError("empty negative candidate set")
        neg = candidates[torch.randint(0, len(candidates), (num_pos,), generator=generator)]
    # k distinct cyclic shifts: row i uses (i + shift_j) mod n, shifts distinct -> distinct columns
    shifts = torch.randperm(num_pos, generator=generator)[:k]
    pair_index = (torch.arange(num_pos).unsqueeze(1) + shifts.unsqueeze(0)) % num_pos
    return JointNegatives(neg, pair_index)


def uniform_negative_sample(num_pos: int, k: int, num_dst_nodes: int,
                            generator: Optional[torch.Generator] = None) -> JointNegatives:
    """Uniform negative sampling: ``k`` fresh destination nodes per positive (``k*n`` nodes).

    The baseline :func:`joint_negative_sample` is compared with: the same number of negative
    pairs, but every one of them is a distinct node to encode (DGL's
    ``negative_sampler.Uniform``, on plain ids).

    Returns JointNegatives with ``neg_nodes`` ``[n*k]`` and ``pair_index`` ``[n, k]``
    (``arange(n*k).view(n, k)``). Raises ValueError if ``n < 1``, ``k < 1`` or there is no
    destination node.
    """
    if num_pos < 1 or k < 1:
        raise ValueError(f"uniform_negative_sample needs n >= 1 and k >= 1, got n={num_pos}, k={k}")
    if num_dst_nodes < 1:
        raise ValueError("no destination nodes to sample negatives from")
    neg = torch.randint(0, num_dst_nodes, (num_pos * k,), generator=generator)
    return JointNegatives(neg, torch.arange(num_pos * k).view(num_pos, k))


NEGATIVE_SAMPLERS = {"joint": joint_negative_sample, "uniform": uniform_negative_sample}

POLICIES = ("random", "targets", "degree")


def select_trainable_nodes(num_input: int, num_seeds: int, max_trainable: int,
                           generator: Optional[torch.Generator] = None, policy: str = "random",
                           degrees: Optional[torch.Tensor] = None, deg_threshold: int = 0
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Choose which of a mini-batch's input nodes the LM encodes with gradient.

    DGL puts a block's destination nodes, hence the seeds, first among the input nodes, so
    positions ``0..num_seeds-1`` are the seeds. Policies (at most ``max_trainable`` nodes):

    - ``random`` (LM-GNN §3.3, back-prop on samples): the seeds, then a uniform random subset
      of the other input nodes;
    - ``targets`` (LEADING): the seeds only;
    - ``degree`` (DyLGNN Algorithm 1, ``splitNode``): the seeds, then the other input nodes
      whose degree is above ``deg_threshold``, highest degree first.

    If there are more seeds than ``max_trainable``, a uniform random subset of the seeds is
    chosen. Everything not chosen is an inference node.

    Parameters
    ----------
    degrees : int64 ``[num_input]`` node degrees (``degree`` policy only).

    Returns
    -------
    (train_idx, infer_idx) : int64 positions into the input nodes, sorted, disjoint, together
    ``arange(num_input)``.

    Raises
    ------
    ValueError on an unknown policy, ``num_seeds > num_input``, ``max_trainable < 1``, or a
    ``degree`` policy without ``degrees`` of length ``num_input``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown trainable-node policy {policy!r}; expected one of {POLICIES}")
    if num_seeds > num_input:
        raise ValueError(f"num_seeds={num_seeds} exceeds num_input={num_input}")
    if max_trainable < 1:
        raise ValueError("max_trainable must be >= 1")
    n_seed = min(num_seeds, max_trainable)
    if n_seed < num_seeds:
        seeds = torch.randperm(num_seeds, generator=generator)[:n_seed]
    else:
        seeds = torch.arange(num_seeds)
    room = max_trainable - n_seed
    others = torch.arange(num_seeds, num_input)
    if policy == "targets" or room == 0:
        extra = others[:0]
    elif policy == "random":
        extra = others[torch.randperm(len(others), generator=generator)[:room]]
    else:
        if degrees is None or len(degrees) != num_input:
            raise ValueError("the 'degree' policy needs degrees for every input node")
        deg = degrees[others]
        keep = others[deg > deg_threshold]
        order = torch.argsort(degrees[keep], descending=True, stable=True)
        extra = keep[order][:room]
    chosen = torch.zeros(num_input, dtype=torch.bool)
    chosen[seeds] = True
    chosen[extra] = True
    return torch.nonzero(chosen).squeeze(1), torch.nonzero(~chosen).squeeze(1)


def select_trainable_nodes_hetero(num_input: Dict[str, int], num_seeds: Dict[str, int],
                                  max_trainable: int, generator: Optional[torch.Generator] = None,
                                  policy: str = "random",
                                  degrees: Optional[Dict[str, torch.Tensor]] = None,
                                  deg_threshold: int = 0
                                  ) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """:func:`select_trainable_nodes` over several node types with one budget.

    The input nodes of all types are ranked together: every type's seeds first (a random
    subset of them if they exceed ``max_trainable``), then the other input nodes by the
    policy. ``num_input``/``num_seeds``/``degrees`` are keyed by ntype (the LM-encoded types);
    per type, positions ``0..num_seeds[nt]-1`` are the seeds (DGL's block layout).

    Returns ntype -> ``(train_idx, infer_idx)``, positions into that type's input nodes.
    """
    types = list(num_input)
    seed_pos = [torch.arange(num_seeds.get(nt, 0)) for nt in types]
    other_pos = [torch.arange(num_seeds.get(nt, 0), num_input[nt]) for nt in types]
    # flattened order: all seeds (type by type), then all other input nodes; owner = type index
    owner = torch.cat([torch.full((len(p),), i) for part in (seed_pos, other_pos)
                       for i, p in enumerate(part)] or [torch.zeros(0, dtype=torch.long)])
    local = torch.cat(seed_pos + other_pos) if types else torch.zeros(0, dtype=torch.long)
    deg = None
    if degrees is not None:
        deg = torch.cat([degrees[nt][p] for nt, p in zip(types, seed_pos)]
                        + [degrees[nt][p] for nt, p in zip(types, other_pos)])
    train, _ = select_trainable_nodes(len(local), sum(len(p) for p in seed_pos), max_trainable,
                                      generator, policy, deg, deg_threshold)
    out = {}
    for i, nt in enumerate(types):
        chosen = torch.zeros(num_input[nt], dtype=torch.bool)
        mine = train[owner[train] == i]
        chosen[local[mine]] = True
        out[nt] = (torch.nonzero(chosen).squeeze(1), torch.nonzero(~chosen).squeeze(1))
    return out
