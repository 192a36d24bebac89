"""One trainer per LM-GNN stage (Ioannidis et al., 2022), run by every trainer process of a
DistDGL job, on the :class:`~lmgnn_dist.trainer.base.StageTrainer` skeleton:

==============  =============================================  ==================================
stage           trainer                                        trains
==============  =============================================  ==================================
``stage1``      :class:`~.lm_lp.LMLinkPredictionTrainer`       the LMs on link prediction (eq. 2)
``baseline``    :class:`~.gnn.GNNTrainer` (pre-trained LMs)    GNN encoder + decoder, LMs frozen
``stage2``      :class:`~.gnn.GNNTrainer` (stage-1 LMs)        GNN encoder + decoder, LMs frozen
``stage3``      :class:`~.joint.JointTrainer`                  LMs + GNN encoder + decoder
==============  =============================================  ==================================

The task (node classification, edge classification, link prediction) is the pluggable head
(:mod:`lmgnn_dist.tasks`).
"""
from .base import StageEnv, StageTrainer
from .gnn import GNNTrainer
from .joint import JointTrainer
from .lm_lp import LMLinkPredictionTrainer

#: stage name -> its trainer class
TRAINERS = {"baseline": GNNTrainer, "stage1": LMLinkPredictionTrainer, "stage2": GNNTrainer,
            "stage3": JointTrainer}

__all__ = ["TRAINERS", "StageEnv", "StageTrainer", "GNNTrainer", "JointTrainer",
           "LMLinkPredictionTrainer"]
