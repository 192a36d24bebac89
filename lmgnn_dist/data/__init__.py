"""The data path of a trainer: from the partitioned graph to the GNN's inputs.

Owns: mini-batches of target nodes/edges with their blocks (MFGs) (:mod:`.dataloading`),
drawn on the trainer with a seeded generator (:mod:`.neighbors`), negative sampling and the
choice of with-grad nodes (:mod:`.sampling`), the pipelined no-grad LM encode of sub-batches (:mod:`.subbatch`), the
sharded LM-embedding cache in DGL's KV store (:mod:`.lm_cache`), what each node type feeds the
GNN -- an LM encoding or a learnable embedding (:mod:`.node_inputs`), and layer-wise
full-graph GNN inference (:mod:`.layerwise`).

May import: :mod:`lmgnn_dist.model` and the foundation (``stages``, ``config``, ``device``,
``monitor``, ``dist_init``), :mod:`partition`; never tasks, trainers, jobs or drivers.
"""
