"""lmgnn-dist: distributed stage-wise LM + RGCN training on text-attributed graphs (DGL).

Layers, following the data's path: ``partition`` (TAG -> tokenised DGL partitions, a sibling
package) -> :mod:`lmgnn_dist.dist_init` (process start-up) -> :mod:`lmgnn_dist.model` (LM
encoder, RGCN, decoders) -> :mod:`lmgnn_dist.stages` (the three LM-GNN stages) ->
:mod:`lmgnn_dist.pipeline` (driver: partition, launch, report).
"""
__version__ = "0.1.0"
