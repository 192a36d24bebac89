"""The job side's entry points: what every process of a DistDGL job runs.

Owns: ``python -m lmgnn_dist.jobs.train`` (:mod:`.train`: DGL servers, or a trainer that
builds its :class:`~lmgnn_dist.trainer.StageEnv` and fits each stage still to run) and
``python -m lmgnn_dist.jobs.embed`` (:mod:`.embed`: full-graph inference and the embedding
export of one stage checkpoint). A job process never launches jobs: the drivers
(:mod:`lmgnn_dist.drivers`) start them through :func:`launch.api.launch`.

May import: :mod:`lmgnn_dist.trainer` and every layer below it; never the drivers.
"""
