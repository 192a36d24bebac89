"""Layer-wise full-graph inference of any message-passing GNN encoder (DGL's layer-wise
inference): layer ``l`` of every node is computed from layer ``l-1`` of its full
in-neighbourhood and stored in a table (a ``DistTensor`` in a job), so each node's
representation is computed once per layer instead of once per mini-batch that samples it.

Generic over encoders through the seam of :mod:`lmgnn_dist.model.gnn`: it reads only
``encoder.graph_free``, ``encoder.layers`` and each layer's ``out_dim``.
:func:`layerwise_inference` is the job's entry point (``DistGraph``, ``DistTensor``,
``DistNodeDataLoader``); :func:`run_layers` is the loop itself, which also runs on a local
graph (tests).
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Sequence, Tuple

import torch

#: ``(ntype, ids) -> (input_nodes, seeds, [block])`` batches of one-hop full neighbourhoods
OneHopBatches = Callable[[str, torch.Tensor], Iterable[Tuple[dict, dict, list]]]


def run_layers(encoder, ntypes: Sequence[str], inputs: Dict[str, object],
               mine: Dict[str, torch.Tensor], new_table: Callable[[int, str, int], object],
               batches: OneHopBatches, barrier: Callable[[], None] = lambda: None
               ) -> Dict[str, object]:
    """Apply ``encoder.layers`` one after the other to every node in ``mine``.

    Parameters
    ----------
    encoder : a GNN encoder (``graph_free`` False; ``layers`` callable as
        ``layer(block, x)``, each with an ``out_dim``), in eval mode (no dropout).
    ntypes : the graph's node types.
    inputs : ntype -> table (``DistTensor`` or tensor, indexable by int64 ids) of input
        embeddings, float ``[N, in_dim]``.
    mine : ntype -> int64 ids this process computes (all processes together: every node).
    new_table : ``(layer index, ntype, width) -> table`` float32 ``[N_ntype, width]`` that
        takes the layer's output rows.
    batches : one-hop full-neighbourhood blocks over ``ids`` of ``ntype`` (the seeds are the
        first input nodes, as DGL orders them).
    barrier : called after each layer (a ``DistGraph`` barrier: every process's rows of
        layer ``l`` are written before any reads them for layer ``l + 1``).

    Returns
    -------
    ntype -> table float32 ``[N, encoder.out_dim]``: the last layer's output of every node.

    Raises
    ------
    ValueError for a graph-free encoder (it has no layers; apply it to the inputs directly).
    """
    if encoder.graph_free:
        raise ValueError(f"{type(encoder).__name__} is graph-free: no layers to run "
                         "layer-wise")
    h = inputs
    for i, layer in enumerate(encoder.layers):
        out = {nt: new_table(i, nt, layer.out_dim) for nt in ntypes}
        for nt in ntypes:
            for inp, seeds, blocks in batches(nt, mine[nt]):
                x = {t: h[t][ids] for t, ids in inp.items()}
                with torch.no_grad():
                    y = layer(blocks[0], x)
                out[nt][seeds[nt]] = y[nt].float().cpu()
        barrier()
        h = out
    return h


def layerwise_inference(env, encoder, inputs: Dict[str, object],
                        mine: Dict[str, torch.Tensor], batch_size: int) -> Dict[str, object]:
    """Run ``encoder`` (RGCN, RGAT, ...) layer by layer over every node of ``env.g``
    (:func:`run_layers` with ``DistTensor`` tables and DGL's distributed loader).

    Parameters
    ----------
    env : a :class:`~lmgnn_dist.trainer.StageEnv` (``env.g``: the ``DistGraph``).
    encoder, inputs : as :func:`run_layers`.
    mine : ntype -> int64 ids of this trainer's share of the nodes
        (:func:`~lmgnn_dist.data.dataloading.local_nodes`).
    batch_size : seed nodes per one-layer block.

    Returns
    -------
    ntype -> ``DistTensor`` float32 ``[N, encoder.out_dim]`` (persistent, named
    ``layerwise_<layer>_<ntype>``).

    Collective: every trainer must call it (one ``g.barrier()`` per layer). Raises
    ValueError for a graph-free encoder.
    """
    import dgl

    from .dataloading import node_batches

    g = env.g

    def new_table(i: int, nt: str, dim: int):
        return dgl.distributed.DistTensor((g.num_nodes(nt), dim), torch.float32,
                                          name=f"layerwise_{i}_{nt}",
                                          part_policy=g.get_node_partition_policy(nt),
                                          persistent=True)

    def batches(nt: str, ids: torch.Tensor):
        return node_batches(g, {nt: ids}, [1], batch_size, shuffle=False, full_neighbors=True)

    return run_layers(encoder, g.ntypes, inputs, mine, new_table, batches, g.barrier)
