"""Model pieces: LM encoder -> RGCN (LM-GNN eq. 1) -> task decoders (eqs. 2, 3)."""
from .decoders import DistMultDecoder, EdgeClassifier, NodeClassifier, logistic_loss
from .lm import LMEncoder
from .rgcn import RGCN, RGCNLayer

__all__ = ["LMEncoder", "RGCN", "RGCNLayer", "DistMultDecoder", "EdgeClassifier", "NodeClassifier", "logistic_loss"]
