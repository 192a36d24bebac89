"""Where a trainer's models run and in which precision (``launch.device``,
``launch.precision``), decided once at start-up (:func:`resolve_device`).

- ``device: auto | cpu | cuda``: ``auto`` is ``cuda`` when a GPU is visible. Trainer ``i`` of a
  machine (``LOCAL_RANK``) uses GPU ``i``, so a machine needs at least ``launch.num_trainers``
  GPUs.
- The LMs run on that device in every stage (with- and no-grad encodes, stage 1, embed). The
  GNN encoder and the decoders stay on the CPU: DGL's PyPI build (2.1) has no CUDA, so blocks
  and the KV store live on the CPU; an LM's [CLS] output crosses to the CPU inside autograd
  (``Tensor.to``), and its gradient crosses back. The LM-embedding cache stays in the KV
  store, float32.
- ``precision: fp32 | bf16 | fp16``: the LMs' forward passes under ``torch.autocast`` (their
  outputs are cast back to float32 for the GNN); fp16 would need a gradient scaler spanning the
  GPU LM and the CPU GNN, which ``torch.cuda.amp.GradScaler`` does not do, so it is refused
  while the GNN is on the CPU (use bf16).

Only torch is imported here, so the GPU checks (``benchmarks/gpu_check.sh``) use it on a
machine without DGL.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch

DEVICES = ("auto", "cpu", "cuda")
#: ``launch.precision`` -> autocast dtype (None: plain fp32)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class DeviceError(ValueError):
    """The requested device/precision cannot run here; the message names the config key."""


@dataclass(frozen=True)
class DevicePlan:
    """One trainer's devices: ``lm`` (the LMs), ``gnn`` (GNN encoder, decoders, blocks) and
    the LMs' ``precision`` (a key of :data:`PRECISIONS`)."""

    lm: torch.device
    gnn: torch.device
    precision: str = "fp32"

    @property
    def autocast_dtype(self) -> Optional[torch.dtype]:
        return PRECISIONS[self.precision]

    @property
    def mixed(self) -> bool:
        """The LMs and the GNN are on different device types (their gradients cannot be
        reduced by one DDP: :class:`~lmgnn_dist.trainer.gradsync.AllReduceGradients`)."""
        return self.lm.type != self.gnn.type

    def autocast(self):
        """Context of an LM forward pass: ``torch.autocast`` in the plan's precision on the
        LM's device type, or nothing for fp32."""
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.lm.type, dtype=dtype)

    def describe(self) -> str:
        why = ("" if self.gnn.type == self.lm.type else
               " (the installed DGL has no CUDA: blocks and the KV store are on the CPU)")
        return f"LMs on {self.lm} in {self.precision}, GNN encoder + decoder on {self.gnn}{why}"


CPU = DevicePlan(torch.device("cpu"), torch.device("cpu"))


def resolve_device(device: str = "auto", precision: str = "fp32", local_rank: int = 0,
                   trainers_per_machine: int = 1, cuda_available: Optional[bool] = None,
                   gpu_count: Optional[int] = None) -> DevicePlan:
    """The :class:`DevicePlan` of trainer ``local_rank`` of a machine.

    ``cuda_available`` / ``gpu_count`` default to what torch sees (tests pass them).

    Raises
    ------
    DeviceError naming ``launch.device`` / ``launch.precision`` / ``launch.num_trainers``:
    an unknown value, ``cuda`` without a visible GPU, fewer GPUs than trainers per machine,
    fp16 with the GNN on the CPU, or fp16 on the CPU.
    """
    if device not in DEVICES:
        raise DeviceError(f"launch.device must be one of {list(DEVICES)}, got {device!r}")
    if precision not in PRECISIONS:
        raise DeviceError(f"launch.precision must be one of {list(PRECISIONS)}, got "
                          f"{precision!r}")
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device == "cpu":
        if precision == "fp16":
            raise DeviceError("launch.precision=fp16 needs launch.device=cuda (CPU autocast "
                              "runs bf16); use bf16 or fp32")
        return DevicePlan(torch.device("cpu"), torch.device("cpu"), precision)
    if not cuda_available:
        raise DeviceError("launch.device=cuda but torch sees no CUDA device on this machine "
                          "(torch.cuda.is_available() is False); use launch.device=auto or cpu")
    gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpus < trainers_per_machine:
        raise DeviceError(f"launch.num_trainers={trainers_per_machine} trainers per machine "
                          f"need a GPU each, but this machine has {gpus}; lower "
                          "launch.num_trainers or use launch.device=cpu")
    if precision == "fp16":
        raise DeviceError("launch.precision=fp16 needs a gradient scaler over the GPU LM and the "
                          "CPU GNN, which torch's GradScaler does not span; use bf16")
    return DevicePlan(torch.device("cuda", local_rank), torch.device("cpu"), precision)


def peak_gpu_mem_mib(plan: DevicePlan) -> float:
    """``torch.cuda.max_memory_allocated`` of the plan's GPU in MiB (0 on the CPU)."""
    if plan.lm.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(plan.lm) / 2**20
