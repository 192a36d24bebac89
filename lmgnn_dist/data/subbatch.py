"""Asynchronous prepare -> compute pipeline for no-grad LM sub-batches (DyLGNN §V).

The LM's inference nodes are encoded in fixed-size sub-batches. Preparing a sub-batch (pulling
its token rows from the KV store over RPC, trimming the padding, and on CUDA pinning it and
copying it to the GPU on a side stream) is independent of encoding the previous one, so a
producer thread runs one FIFO slot (``depth``) ahead of the encoder. ``depth=0`` runs the same
steps synchronously; both give bit-identical results (same sub-batches, same order).

Only the producer thread talks to the KV store while a pipeline runs; the caller must not issue
other DGL RPCs until :func:`encode_pipelined` returns (DGL's RPC client is not meant for
concurrent use from several threads).
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, List, Optional

import torch

from ..model.lm import LMEncoder

_DONE = object()


def _prepare(fetch: Callable[[torch.Tensor], torch.Tensor], fetch_sparse, ids: torch.Tensor,
             device: torch.device, stream):
    tokens = fetch(ids)
    sparse = fetch_sparse(ids) if fetch_sparse is not None else None
    if device.type != "cuda":
        return tokens, sparse
    with torch.cuda.stream(stream):
        return tokens.pin_memory().to(device, non_blocking=True), sparse


def encode_pipelined(lm: LMEncoder, fetch: Callable[[torch.Tensor], torch.Tensor],
                     ids: torch.Tensor, batch_size: int, depth: int = 1,
                     device: Optional[torch.device] = None,
                     fetch_sparse: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                     ) -> torch.Tensor:
    """Encode nodes ``ids`` without gradient, overlapping token fetch with LM compute.

    Parameters
    ----------
    lm : the encoder (its :meth:`~LMEncoder.encode_no_grad` runs each sub-batch).
    fetch : ``ids [b] -> token ids [b, L]`` (e.g. a ``DistTensor`` row pull).
    ids : int64 ``[N]`` nodes, encoded in order in sub-batches of ``batch_size``.
    depth : FIFO slots between producer and consumer; 0 = synchronous.
    device : where the LM runs (default: ``lm.device``); on CUDA the token rows are pinned
        and copied on a side stream.
    fetch_sparse : ``ids [b] -> bool [b]``, rows to encode with block-sparse attention
        (e.g. low-degree nodes); None: all dense.

    Returns
    -------
    float32 ``[N, lm.out_dim]`` embeddings on CPU, row ``i`` for ``ids[i]``.

    Raises
    ------
    Any exception of ``fetch`` (re-raised in the caller's thread).
    """
    device = device or lm.device
    stream = torch.cuda.Stream() if device.type == "cuda" else None
    chunks = [ids[s:s + batch_size] for s in range(0, len(ids), batch_size)]
    outs: List[torch.Tensor] = []

    def consume(item):
        tokens, sparse = item
        if stream is not None:
            torch.cuda.current_stream().wait_stream(stream)
        outs.append(lm.encode_no_grad(tokens, batch_size, sparse_rows=sparse).cpu())

    if depth <= 0:
        for c in chunks:
            consume(_prepare(fetch, fetch_sparse, c, device, stream))
    else:
        fifo: "queue.Queue" = queue.Queue(maxsize=depth)
        error: List[BaseException] = []

        def produce():
            try:
                for c in chunks:
                    fifo.put(_prepare(fetch, fetch_sparse, c, device, stream))
            except BaseException as exc:  # hand it to the consumer thread
                error.append(exc)
            fifo.put(_DONE)

        worker = threading.Thread(target=produce, name="lm-subbatch-producer", daemon=True)
        worker.start()
        while True:
            item = fifo.get()
            if item is _DONE:
                break
            consume(item)
        worker.join()
        if error:
            raise error[0]
    if not outs:
        return torch.zeros(0, lm.out_dim)
    return torch.cat(outs)
