"""What each node type feeds the GNN: an LM encoding, or a learnable embedding.

``model.encoders`` maps node types to encoders (:func:`resolve_encoders`): ``shared`` (the
run's LM, ``model.lm``), a model path / alias of the type's *own* LM, or ``embedding``. Node
types without text (no ``text`` column in their table) must use ``embedding``: a row per node
in a ``dgl.distributed.DistEmbedding`` (sharded over the servers like the graph), trained with
DGL's distributed sparse Adam (:class:`LearnableEmbeddings`), as GraphStorm does for
featureless node types.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from .dataloading import local_nodes
from ..model.joint import SHARED, own_key

EMBEDDING = "embedding"
__all__ = ["EMBEDDING", "SHARED", "LearnableEmbeddings", "gather_inputs", "lm_folder",
           "resolve_encoders"]


def resolve_encoders(encoders: Dict[str, str], lm: str, meta: dict
                     ) -> Tuple[Dict[str, str], Dict[str, str], List[str]]:
    """Resolve ``model.encoders`` against the partitioned graph.

    Parameters
    ----------
    encoders : ntype -> ``"shared"`` | ``"embedding"`` | model path/alias (``model.encoders``);
        unlisted types: ``shared`` if they have text, else ``embedding``.
    lm : ``model.lm``, the shared LM.
    meta : the partitioner's ``lmgnn_meta.json`` (``ntypes[nt]["has_text"]``).

    Returns
    -------
    (lm_of, paths, embedding_ntypes) : ntype -> LM key (:data:`SHARED` or :func:`own_key`),
    LM key -> model path, and the node types with learnable embeddings.

    Raises
    ------
    ValueError naming the node type: unknown type, or an LM asked for a type without text.
    """
    ntypes = meta["ntypes"]
    unknown = sorted(set(encoders) - set(ntypes))
    if unknown:
        raise ValueError(f"model.encoders names node type(s) {unknown} that the graph does not "
                         f"have; node types: {sorted(ntypes)}")
    lm_of: Dict[str, str] = {}
    paths: Dict[str, str] = {}
    emb: List[str] = []
    for nt, info in ntypes.items():
        has_text = info.get("has_text", True)
        spec = encoders.get(nt, SHARED if has_text else EMBEDDING)
        if spec == EMBEDDING:
            emb.append(nt)
            continue
        if not has_text:
            raise ValueError(f"model.encoders.{nt}={spec!r}, but node type {nt!r} has no text "
                             f"(its table has no 'text' column); use {EMBEDDING!r}")
        key = SHARED if spec == SHARED else own_key(nt)
        lm_of[nt] = key
        paths[key] = lm if spec == SHARED else spec
    return lm_of, paths, emb


def lm_folder(key: str) -> str:
    """Checkpoint sub-folder of an LM: ``lm`` (shared) or ``lm_<ntype>`` (a type's own)."""
    return "lm" if key == SHARED else "lm_" + key[len("own_"):]


def _small_uniform(shape, dtype):
    """``init_func`` of learnable embeddings (module level: DGL pickles it to the servers):
    U(-1/sqrt(D), 1/sqrt(D)), seeded by the shape so a partition's rows are reproducible."""
    gen = torch.Generator().manual_seed(int(shape[0]) * 1_000_003 + int(shape[1]))
    bound = 1.0 / float(shape[1]) ** 0.5
    return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1).mul(bound).to(dtype)


class LearnableEmbeddings:
    """One ``DistEmbedding`` float32 ``[num_nodes(nt), dim]`` per text-less node type, and
    DGL's ``SparseAdam`` over them.

    Calling it with ntype -> int64 ids returns ntype -> ``[len(ids), dim]`` rows; with
    autograd enabled the rows are traced, and :meth:`step` (collective: every trainer, every
    step) pushes their gradients to the servers. Creating it is collective too; ``name``
    must be unique in the job (one table per stage).
    """

    def __init__(self, g, ntypes: List[str], dim: int, name: str, lr: float):
        import dgl

        self.g, self.dim = g, dim
        self.emb = {nt: dgl.distributed.DistEmbedding(
            g.num_nodes(nt), dim, name=f"{name}_{nt}", init_func=_small_uniform,
            part_policy=g.get_node_partition_policy(nt)) for nt in ntypes}
        self.opt = (dgl.distributed.optim.SparseAdam(list(self.emb.values()), lr=lr)
                    if self.emb else None)

    def __call__(self, ids: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {nt: self.emb[nt](i) for nt, i in ids.items() if nt in self.emb}

    def step(self) -> None:
        if self.opt is not None:
            self.opt.step()

    def zero_term(self, h: Dict[str, torch.Tensor]) -> torch.Tensor:
        """``0 * sum(rows)``: added to a loss so every traced row gets a (zero) gradient even
        when its node does not reach the targets (DGL's step expects one per trace)."""
        return sum((0.0 * x.sum() for nt, x in h.items() if nt in self.emb), torch.zeros(()))

    def local_rows(self) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
        """This trainer's share of every table: ntype -> (ids, rows)."""
        out = {}
        for nt, e in self.emb.items():
            ids = local_nodes(self.g, nt)
            out[nt] = (ids, e.weight[ids])
        return out

    def restore(self, rows: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Write back rows from :meth:`local_rows` (collective: ends with a barrier)."""
        for nt, (ids, x) in rows.items():
            self.emb[nt].weight[ids] = x
        self.g.barrier()

    def save(self, folder: Path, rank: int) -> None:
        """Each trainer writes its share: ``<folder>/<ntype>/part-<rank>.pt`` (ids, rows)."""
        for nt, (ids, x) in self.local_rows().items():
            (folder / nt).mkdir(parents=True, exist_ok=True)
            torch.save({"ids": ids, "emb": x}, folder / nt / f"part-{rank}.pt")

    def load(self, folder: Path, is_main: bool) -> None:
        """Load a :meth:`save`\\ d folder (any number of parts); rank 0 writes, then a barrier.

        Raises FileNotFoundError naming the folder if a node type has no part file.
        """
        if is_main:
            for nt, e in self.emb.items():
                parts = sorted((folder / nt).glob("part-*.pt"))
                if not parts:
                    raise FileNotFoundError(f"{folder / nt}: no learnable embeddings saved")
                for p in parts:
                    d = torch.load(p)
                    e.weight[d["ids"]] = d["emb"]
        self.g.barrier()


def gather_inputs(cache, learnable: Optional[LearnableEmbeddings],
                  ids: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """GNN inputs of ``ids`` (ntype -> int64): LM types from the LM-embedding cache, text-less
    types from the learnable embeddings (traced for gradient if autograd is on)."""
    out = cache.read({nt: i for nt, i in ids.items() if nt in cache.tables})
    if learnable is not None:
        out.update(learnable(ids))
    return out


def gather_tokens(token_rows: Callable[[str, torch.Tensor], torch.Tensor],
                  groups: Sequence[Tuple[str, torch.Tensor]]
                  ) -> Tuple[Dict[str, torch.Tensor], List[torch.Tensor]]:
    """Token rows of the unique nodes of ``groups`` (a list of ``(ntype, ids)``).

    ``token_rows(ntype, ids)`` reads int token ids ``[len(ids), L]``. Returns ``tokens``
    (ntype -> ``[U_t, L]``, one row per unique node of the type) and, per group, int64
    positions ``[len(ids)]`` into its type's rows: nodes appearing in several groups (or twice
    in one) are encoded once.
    """
    by_type: Dict[str, list] = {}
    for nt, ids in groups:
        by_type.setdefault(nt, []).append(ids)
    tokens, inverse = {}, {}
    for nt, parts in by_type.items():
        uniq, inv = torch.unique(torch.cat(parts), return_inverse=True)
        tokens[nt] = token_rows(nt, uniq)
        inverse[nt] = list(torch.split(inv, [len(p) for p in parts]))
    return tokens, [inverse[nt].pop(0) for nt, _ in groups]
