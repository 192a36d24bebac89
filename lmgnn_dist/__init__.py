"""lmgnn-dist: distributed stage-wise LM + RGCN training on text-attributed graphs (DGL).

Layers, following the data's path (``ARCHITECTURE.md`` draws it): ``partition`` (TAG ->
tokenised DGL partitions, a sibling package) -> :mod:`lmgnn_dist.dist_init` (process
start-up) -> :mod:`lmgnn_dist.model`, :mod:`lmgnn_dist.builders`, :mod:`lmgnn_dist.tasks`
(node input encoders, GNN encoder, decoders) -> :mod:`lmgnn_dist.trainer` (one trainer per
LM-GNN stage) -> :mod:`lmgnn_dist.runplan` and the drivers :mod:`lmgnn_dist.pipeline` /
:mod:`lmgnn_dist.ray_pipeline` (prepare, launch, results).
"""
__version__ = "0.1.0"
