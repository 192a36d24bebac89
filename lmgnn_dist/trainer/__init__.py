"""One trainer per LM-GNN stage (Ioannidis et al., 2022), run by every trainer process of a
DistDGL job, on the :class:`~lmgnn_dist.trainer.base.StageTrainer` skeleton:

==============  =============================================  ==================================
stage           trainer                                        trains
==============  =============================================  ==================================
``stage1``      :class:`~.lm_lp.LMLinkPredictionTrainer`       the LMs on link prediction (eq. 2)
``stage1``      :class:`~.task_lm.TaskLMTrainer`               the LMs on the task, MLP head
                (``stage1.objective: task``)
``baseline``    :class:`~.gnn.GNNTrainer` (pre-trained LMs)    GNN encoder + decoder, LMs frozen
``stage2``      :class:`~.gnn.GNNTrainer` (stage-1 LMs)        GNN encoder + decoder, LMs frozen
``stage3``      :class:`~.joint.JointTrainer`                  LMs + GNN encoder + decoder
``stage3``      :class:`~.glem.GLEMTrainer`                    LMs (MLP head) and GNN in turn
                (``stage3.mode: glem``)
==============  =============================================  ==================================

The task (node classification, edge classification, link prediction) is the pluggable head
(:mod:`lmgnn_dist.tasks`).

May import: :mod:`lmgnn_dist.run`, :mod:`lmgnn_dist.tasks`, :mod:`lmgnn_dist.data`,
:mod:`lmgnn_dist.model` and the foundation; never jobs or drivers. Also here: the builders of
what every trainer builds (:mod:`.builders`), evaluation and best-model selection
(:mod:`.evaluation`), the loop bookkeeper (:mod:`.run`), stage 3's inputs
(:mod:`.joint_inputs`).
"""
from ..stages import variant_of
from .base import StageEnv, StageTrainer
from .glem import GLEMTrainer
from .gnn import GNNTrainer
from .joint import JointTrainer
from .lm_lp import LMLinkPredictionTrainer
from .task_lm import TaskLMTrainer

#: stage name (a row of :mod:`lmgnn_dist.stages`) -> its trainer class
TRAINERS = {"baseline": GNNTrainer, "stage1": LMLinkPredictionTrainer, "stage2": GNNTrainer,
            "stage3": JointTrainer}
#: (stage, variant) -> the trainer class where a variant has its own
VARIANT_TRAINERS = {("stage1", "task"): TaskLMTrainer, ("stage3", "glem"): GLEMTrainer}


def trainer_of(cfg, name: str) -> type:
    """The trainer class of stage ``name`` under ``cfg`` (by the stage's variant,
    :func:`lmgnn_dist.stages.variant_of`: stage 1 by ``stage1.objective``, stage 3 by
    ``stage3.mode``)."""
    return VARIANT_TRAINERS.get((name, variant_of(name, cfg)), TRAINERS[name])


__all__ = ["TRAINERS", "trainer_of", "StageEnv", "StageTrainer", "GNNTrainer", "JointTrainer",
           "TaskLMTrainer", "LMLinkPredictionTrainer", "GLEMTrainer"]
