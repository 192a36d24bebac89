"""Where a trainer's models run and in which precision (``launch.device``,
``launch.precision``), decided once at start-up (:func:`resolve_device`).

- ``device: auto | cpu | cuda``: ``auto`` is ``cuda`` when a GPU is visible. Trainer ``i`` of a
  machine (``LOCAL_RANK``) uses GPU ``i``, so a machine needs at least ``launch.num_trainers``
  GPUs.
- The LMs run on that device in every stage (with- and no-grad encodes, stage 1, embed).
- The GNN encoder and the decoders follow them when the installed DGL has CUDA
  (:func:`dgl_has_cuda`: a CUDA build from DGL's own wheel index): each RGCN layer moves its
  block and inputs to its weights' device (:func:`to_device`; a no-op on the CPU), so the
  samplers, the KV store and the LM-embedding cache (float32) stay on the CPU and the same code
  serves both cases. With DGL's PyPI build (2.1, CPU only) they stay on the CPU: an LM's [CLS]
  output crosses to the CPU inside autograd (``Tensor.to``), and its gradient crosses back.
  Decided once at start-up and logged (:meth:`DevicePlan.describe`).
- ``precision: fp32 | bf16 | fp16 | auto``: the LMs' forward passes under ``torch.autocast``
  (their outputs are cast back to float32 for the GNN; the GNN, the losses and the optimizer
  states stay float32). bf16 runs on the CPU too (AMX / AVX512-BF16 matrix units).
  ``auto`` is bf16 where the hardware computes it natively -- a CPU whose ``/proc/cpuinfo``
  flags include ``amx_bf16`` or ``avx512_bf16`` (:data:`BF16_CPU_FLAGS`), a GPU with
  ``torch.cuda.is_bf16_supported()`` -- else fp32 (:func:`auto_precision`); the choice and
  its reason are logged with the devices. An explicit ``bf16`` on a CPU without those flags
  runs (emulated, far slower than fp32) with a warning on the console. fp16 needs a gradient scaler
  (:meth:`DevicePlan.grad_scaler`, ``torch.cuda.amp.GradScaler``), which only spans CUDA
  parameters: it is allowed when the GNN is on the GPU too, refused while it is on the CPU
  (use bf16).

Only torch is imported here, so the GPU checks (``benchmarks/gpu_check.sh``) use it on a
machine without DGL.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Dict, FrozenSet, Iterable, Optional, Tuple

import torch

DEVICES = ("auto", "cpu", "cuda")
#: ``launch.precision`` -> autocast dtype (None: plain fp32)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: what ``launch.precision`` accepts: a key of :data:`PRECISIONS`, or ``auto``
PRECISION_CHOICES = ("auto", *PRECISIONS)
#: CPU flags (``/proc/cpuinfo``) of native bf16 matrix arithmetic: AMX tiles, AVX512-BF16
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


class DeviceError(ValueError):
    """The requested device/precision cannot run here; the message names the config key."""


@dataclass(frozen=True)
class DevicePlan:
    """One trainer's devices: ``lm`` (the LMs), ``gnn`` (GNN encoder, decoders, blocks) and
    the LMs' ``precision`` (a key of :data:`PRECISIONS`)."""

    lm: torch.device
    gnn: torch.device
    precision: str = "fp32"
    #: why ``launch.precision=auto`` chose :attr:`precision` ("" when it was given)
    reason: str = field(default="", compare=False)
    #: a line for the user's console when the asked precision runs slowly here ("": none)
    warning: str = field(default="", compare=False)

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

    def grad_scaler(self):
        """``torch.cuda.amp.GradScaler``, enabled for fp16 only (disabled, its ``scale``/
        ``step``/``update`` pass through, so every precision takes one code path)."""
        return torch.cuda.amp.GradScaler(enabled=self.precision == "fp16")

    def describe(self) -> str:
        why = ("" if self.gnn.type == self.lm.type else
               " (the installed DGL has no CUDA: blocks and the KV store are on the CPU)")
        how = f" (launch.precision=auto: {self.reason})" if self.reason else ""
        return (f"LMs on {self.lm} in {self.precision}{how}, GNN encoder + decoder on "
                f"{self.gnn}{why}")


def to_device(device: torch.device, block, h: Dict[str, torch.Tensor]
              ) -> Tuple[object, Dict[str, torch.Tensor]]:
    """``block`` (a DGL block/MFG) and its input features ``h`` (ntype -> ``[N, D]``) on
    ``device``: the GNN's one device boundary (called by each GNN layer with its weights'
    device). Both moves return their argument unchanged when it is already there, and ``.to``
    keeps autograd (gradients flow back to the CPU-side LM outputs / learnable rows)."""
    return block.to(device), {nt: x.to(device) for nt, x in h.items()}


def dgl_has_cuda() -> bool:
    """Whether the installed DGL can put a graph on a GPU (a CUDA build and a visible GPU).
    Imports DGL only when torch sees a GPU."""
    if not torch.cuda.is_available():
        return False
    try:
        import dgl

        dgl.graph(([0], [0])).to(torch.device("cuda", 0))
        return True
    except Exception:  # the CPU build raises DGLError("... cuda is not enabled"); any failure
        return False   # means the GNN cannot run there


CPU = DevicePlan(torch.device("cpu"), torch.device("cpu"))


def cpu_flags(path: str = "/proc/cpuinfo") -> FrozenSet[str]:
    """The CPU's feature flags (the ``flags`` lines of ``path``); empty when it cannot be read
    (not Linux) -- then ``auto`` precision stays fp32."""
    try:
        with open(path) as f:
            return frozenset(word for line in f if line.startswith("flags")
                             for word in line.split(":", 1)[1].split())
    except OSError:
        return frozenset()


def auto_precision(device_type: str, flags: Optional[Iterable[str]] = None,
                   cuda_bf16: Optional[Callable[[], bool]] = None) -> Tuple[str, str]:
    """``(precision, reason)`` for ``launch.precision=auto`` on ``device_type`` (``cpu`` or
    ``cuda``): bf16 when the CPU has one of :data:`BF16_CPU_FLAGS` (``flags``, default
    :func:`cpu_flags`) or the GPU supports bf16 (``cuda_bf16``, default
    ``torch.cuda.is_bf16_supported``), else fp32. ``reason`` is a short phrase for the log."""
    if device_type == "cuda":
        ok = (cuda_bf16 or torch.cuda.is_bf16_supported)()
        return ("bf16", "the GPU supports bf16") if ok else ("fp32", "the GPU has no bf16")
    have = native_bf16_flags(flags)
    if have:
        return "bf16", f"the CPU has {' and '.join(have)}"
    return "fp32", f"the CPU has neither {' nor '.join(BF16_CPU_FLAGS)}"


def native_bf16_flags(flags: Optional[Iterable[str]] = None) -> list:
    """The sorted :data:`BF16_CPU_FLAGS` the CPU has (``flags``, default :func:`cpu_flags`)."""
    return sorted(set(cpu_flags() if flags is None else flags) & set(BF16_CPU_FLAGS))


#: the console line of an explicit ``launch.precision=bf16`` on a CPU without bf16 units
SLOW_BF16 = (f"launch.precision=bf16 on a CPU without {' or '.join(BF16_CPU_FLAGS)}: bf16 "
             "autocast is emulated here and runs far slower than fp32 (MiniLM ~25x on an "
             "AVX2-only EPYC, measured 2026-12-06); use launch.precision=auto or fp32")


def resolve_device(device: str = "auto", precision: str = "fp32", local_rank: int = 0,
                   trainers_per_machine: int = 1, cuda_available: Optional[bool] = None,
                   gpu_count: Optional[int] = None,
                   dgl_cuda: Optional[bool] = None,
                   flags: Optional[Iterable[str]] = None,
                   cuda_bf16: Optional[Callable[[], bool]] = None) -> DevicePlan:
    """The :class:`DevicePlan` of trainer ``local_rank`` of a machine: the LMs on its GPU
    ``local_rank`` for ``cuda``; the GNN there too when DGL has CUDA, else on the CPU.

    ``precision="auto"`` is resolved here, once (:func:`auto_precision`; the plan's
    ``reason`` says why). ``cuda_available`` / ``gpu_count`` / ``dgl_cuda`` / ``flags`` (the
    CPU's flags) / ``cuda_bf16`` default to what torch, DGL and ``/proc/cpuinfo`` say (tests
    pass them).

    Raises
    ------
    DeviceError naming ``launch.device`` / ``launch.precision`` / ``launch.num_trainers``:
    an unknown value, ``cuda`` without a visible GPU, fewer GPUs than trainers per machine,
    fp16 with the GNN on the CPU, or fp16 on the CPU.

    An explicit ``bf16`` on a CPU without :data:`BF16_CPU_FLAGS` is allowed (the numbers are
    bf16's) but slow: the plan's ``warning`` says so (:data:`SLOW_BF16`).
    """
    if device not in DEVICES:
        raise DeviceError(f"launch.device must be one of {list(DEVICES)}, got {device!r}")
    if precision not in PRECISION_CHOICES:
        raise DeviceError(f"launch.precision must be one of {list(PRECISION_CHOICES)}, got "
                          f"{precision!r}")
    cuda_available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    reason = ""
    if precision == "auto" and (device == "cpu" or cuda_available):
        precision, reason = auto_precision(device, flags, cuda_bf16)
    if device == "cpu":
        if precision == "fp16":
            raise DeviceError("launch.precision=fp16 needs launch.device=cuda (CPU autocast "
                              "runs bf16); use bf16 or fp32")
        slow = precision == "bf16" and not native_bf16_flags(flags)
        return DevicePlan(torch.device("cpu"), torch.device("cpu"), precision, reason,
                          SLOW_BF16 if slow else "")
    if not cuda_available:
        raise DeviceError("launch.device=cuda but torch sees no CUDA device on this machine "
                          "(torch.cuda.is_available() is False); use launch.device=auto or cpu")
    gpus = torch.cuda.device_count() if gpu_count is None else gpu_count
    if gpus < trainers_per_machine:
        raise DeviceError(f"launch.num_trainers={trainers_per_machine} trainers per machine "
                          f"need a GPU each, but this machine has {gpus}; lower "
                          "launch.num_trainers or use launch.device=cpu")
    gpu = torch.device("cuda", local_rank)
    dgl_cuda = dgl_has_cuda() if dgl_cuda is None else dgl_cuda
    if precision == "fp16" and not dgl_cuda:
        raise DeviceError("launch.precision=fp16 needs a gradient scaler over the GPU LM and the "
                          "CPU GNN (the installed DGL has no CUDA), which torch's GradScaler "
                          "does not span; use bf16")
    return DevicePlan(gpu, gpu if dgl_cuda else torch.device("cpu"), precision, reason)


def check_precision(plan: DevicePlan, embedding_ntypes) -> None:
    """Refuse fp16 when node types have learnable embeddings (``model.encoders: embedding``):
    DGL's distributed sparse optimizer would apply their loss-scaled gradients unscaled.

    Raises DeviceError naming ``launch.precision`` and the node types."""
    if plan.precision == "fp16" and embedding_ntypes:
        raise DeviceError(f"launch.precision=fp16 cannot train the learnable embeddings of "
                          f"{sorted(embedding_ntypes)} (DGL's sparse optimizer does not unscale "
                          "fp16 gradients); use bf16")


def peak_gpu_mem_mib(plan: DevicePlan) -> float:
    """``torch.cuda.max_memory_allocated`` of the plan's GPU in MiB (0 on the CPU)."""
    if plan.lm.type != "cuda":
        return 0.0
    return torch.cuda.max_memory_allocated(plan.lm) / 2**20
