"""The driver side: one process on the user's machine that prepares a run, launches its
distributed jobs and reports -- it never runs a model itself.

Owns: the pre-flight shared by both drivers (:mod:`.prepare`: models, run plan, run folder,
partitions), the launcher-based driver ``lmgnn-run`` (:mod:`.pipeline`, which also turns
``cfg.launch`` into a :class:`launch.api.LaunchSpec` in one place), the Ray driver
``lmgnn-ray`` (:mod:`.ray_pipeline`, :mod:`.ray_connect`, :mod:`.ray_job`), the
embedding-export driver ``lmgnn-embed`` (:mod:`.embed`: checks the checkpoint, then launches
the export job), and the one writer of ``results.json`` / the tables / ``report.png``
(:mod:`.results`, :mod:`.report`).

May import: :mod:`launch`, :mod:`partition`, and every layer of :mod:`lmgnn_dist` (it is the
top one); nothing imports it. Jobs are started as commands (``python -m
lmgnn_dist.jobs.train``), never called in-process.
"""
