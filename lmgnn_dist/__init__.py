"""lmgnn-dist: distributed stage-wise LM + GNN training on text-attributed graphs (DGL).

The package's rooms, in layers (a module imports only its own layer or those below it;
``tests/test_layers.py`` checks it, function-local imports included; ``ARCHITECTURE.md`` draws
the data's path through them):

====  =====================================  ==================================================
layer room                                   owns
====  =====================================  ==================================================
6     :mod:`lmgnn_dist.drivers`              driver side: prepare, launch, results (one process)
5     :mod:`lmgnn_dist.jobs`                 job side's entry points (``python -m``)
4     :mod:`lmgnn_dist.trainer`              one trainer per stage, the loop, builders, evaluation
3     :mod:`lmgnn_dist.tasks`,               the task heads; the run folder, run plan and
      :mod:`lmgnn_dist.run`                  stage-checkpoint reader
2     :mod:`lmgnn_dist.data`                 batches and blocks, samplers, the LM-embedding cache,
                                             node inputs, layer-wise inference
1     :mod:`lmgnn_dist.model`                LM encoder, GNN encoders, decoders, stage models
0     :mod:`lmgnn_dist.config`,              typed config; the stage table; devices; logging and
      :mod:`lmgnn_dist.stages`,              progress; DistDGL start-up and collectives
      :mod:`lmgnn_dist.device`,
      :mod:`lmgnn_dist.monitor`,
      :mod:`lmgnn_dist.dist_init`
====  =====================================  ==================================================

Below all of them: the sibling packages :mod:`partition` (TAG -> tokenised DGL partitions; the
task table :mod:`partition.task_kinds`), :mod:`launch` (processes and hosts of a job) and
:mod:`kernels` (block-sparse attention, no DGL).
"""
__version__ = "0.1.0"
