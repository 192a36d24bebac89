"""The run folder (``output_dir``) and what it holds, read and written by both sides.

Owns: the atomic stage-folder format and ``metrics.json`` (:mod:`.checkpoint`; its ``code``:
:mod:`.code_version`), the one reader
of a stage checkpoint -- ``gnn.pt``, ``node_emb/``, ``lm/``, ``lm_<ntype>/`` and which LM each
key starts from (:mod:`.stage_checkpoint`), the run plan: which stages run, which are
done, what each starts from, the job's command (:mod:`.runplan`), what each stage was trained
on and why a checkpoint is stale (:mod:`.provenance`), and the run folder's rules, marker and
config history (:mod:`.folder`).

May import: :mod:`lmgnn_dist.data` (LM folder names), :mod:`lmgnn_dist.model` and the
foundation; never trainers, jobs or drivers. The trainers write checkpoints through
:mod:`lmgnn_dist.trainer.checkpoints`, the drivers read them here.
"""
