"""Model pieces: LM encoder (its pooling: :mod:`.pooling`) -> GNN encoder (RGCN, LM-GNN
eq. 1, or RGAT) -> task decoders (eqs. 2, 3).

May import: the foundation (``lmgnn_dist.device``, ``lmgnn_dist.config``); never data,
tasks, trainers, jobs or drivers. Adding a GNN encoder: a module here built on :class:`~.gnn.GNNEncoder` /
:class:`~.gnn.SelfLoopLayer`, its row in :data:`GNN_ENCODERS` and the ``model.gnn`` literal
(:data:`lmgnn_dist.config.sections.GNN_KINDS`).
"""
from .decoders import DistMultDecoder, EdgeClassifier, NodeClassifier, logistic_loss
from .gnn import GNNEncoder, SelfLoopLayer
from .lm import LMEncoder
from .rgat import RGAT, RGATLayer
from .rgcn import RGCN, RGCNLayer

#: ``model.gnn`` -> the GNN encoder class (each has ``from_config(model_cfg, in_dim,
#: canonical_etypes)``; see :mod:`lmgnn_dist.model.gnn` for the contract)
GNN_ENCODERS = {"rgcn": RGCN, "rgat": RGAT}

__all__ = ["LMEncoder", "GNNEncoder", "SelfLoopLayer", "GNN_ENCODERS", "RGCN", "RGCNLayer",
           "RGAT", "RGATLayer", "DistMultDecoder", "EdgeClassifier", "NodeClassifier",
           "logistic_loss"]
