"""Data-parallel gradients for a model whose parameters span device types.

``DistributedDataParallel`` wants one device type per wrapped module. With the LMs on a GPU
and the GNN encoder + decoder on the CPU (:mod:`lmgnn_dist.device`), a stage-1 or stage-3
model spans both, so its gradients are averaged here instead: after ``backward()``,
:meth:`AllReduceGradients.sync` all-reduces each device type's gradients, flattened into one
buffer, on that device's process group (NCCL for CUDA, the default gloo group for the CPU).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


class AllReduceGradients(nn.Module):
    """Wraps ``module`` for data-parallel training across trainers; call :meth:`sync` between
    ``loss.backward()`` and ``optimizer.step()``.

    Parameters
    ----------
    module : the model (its parameters may be on several devices).
    groups : device type -> process group for its gradients (missing: the default group).

    On construction every parameter and buffer is broadcast from rank 0 (as DDP does), so all
    trainers start equal. A parameter without a gradient in a step (a relation without edges
    in the batch, the LM pooler) counts as zeros, so every trainer reduces the same tensors in
    the same order; its ``.grad`` then holds the average like the others, or stays None when
    no trainer used it (as DDP leaves it), so the optimizer does not move it.
    """

    def __init__(self, module: nn.Module, groups: Optional[Dict[str, object]] = None):
        super().__init__()
        self.module = module
        self.groups = dict(groups or {})
        self._by_device: Dict[torch.device, List[nn.Parameter]] = {}
        for p in module.parameters():
            if p.requires_grad:
                self._by_device.setdefault(p.device, []).append(p)
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0, group=self.groups.get(t.device.type))

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def sync(self) -> None:
        """Replace every parameter's gradient by its mean over the trainers (collective)."""
        world = dist.get_world_size()
        for device, params in self._by_device.items():
            group = self.groups.get(device.type)
            used = torch.tensor([p.grad is not None for p in params], dtype=torch.float32,
                                device=device)
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            grads = [p.grad for p in params]
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat, group=group)
            dist.all_reduce(used, group=group)
            flat /= world
            for p, g, mean, n in zip(params, grads, _unflatten_dense_tensors(flat, grads),
                                     used.tolist()):
                g.copy_(mean)
                if n == 0:  # no trainer used it: no gradient (the optimizer skips it)
                    p.grad = None
