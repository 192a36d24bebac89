"""This CPU's compute ceilings for the LM, and where a pass spends its time (issue 25 item 4).

* :func:`nominal_peak`: FLOP per cycle per core for fp32 and bf16 matrix work from the CPU's
  vendor, family and flags (``/proc/cpuinfo``), times the clock it reports and the threads
  used. Vendor figures, by core:

  - Intel with AMX (``amx_bf16``, Sapphire Rapids and later): fp32 two 512-bit FMA ports,
    2 x 16 lanes x 2 = 64; bf16 on AMX's tile unit 1,024 (Intel: 1,024 BF16 ops/cycle/core).
  - Intel AVX-512 with ``avx512_bf16`` (Cooper Lake): fp32 64; bf16 ``VDPBF16PS`` 128.
  - AMD family 0x19 with AVX-512 (Zen 4): 512-bit instructions on 256-bit units, fp32
    2 x 8 x 2 = 32; bf16 ``VDPBF16PS`` 64.
  - AMD family 0x1a (Zen 5): full 512-bit units, fp32 64, bf16 128.
  - Otherwise AVX2 FMA: fp32 32; bf16 no faster than fp32 (no native bf16 dot product).

  The clock is ``cpu MHz`` of ``/proc/cpuinfo`` (on a VM the host's nominal clock; turbo may
  run above it, so achieved / nominal can exceed 1).
* :func:`gemm_ceiling`: what a large square matmul (``torch.mm``) reaches on this machine in
  fp32 and bf16 -- the ceiling the LM's matrix multiplies could reach at best.
* :func:`profile_split`: self CPU time of one LM pass by operator family (matmuls, attention,
  LayerNorm, activations, the rest) from ``torch.profiler``.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, FrozenSet, Optional

#: (vendor, family or None, required flag) -> FLOP/cycle/core (fp32, bf16); first match wins
PEAKS = (
    ("GenuineIntel", None, "amx_bf16", 64, 1024, "Intel AMX"),
    ("GenuineIntel", None, "avx512_bf16", 64, 128, "Intel AVX-512 + AVX512-BF16"),
    ("GenuineIntel", None, "avx512f", 64, 64, "Intel AVX-512"),
    ("AuthenticAMD", 0x1a, "avx512f", 64, 128, "AMD Zen 5 (512-bit units)"),
    ("AuthenticAMD", 0x19, "avx512_bf16", 32, 64, "AMD Zen 4 (AVX-512 on 256-bit units)"),
    (None, None, "fma", 32, 32, "AVX2 FMA"),
)


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """``vendor``, ``family`` (int), ``mhz`` (float), ``model`` of the first processor in
    ``path`` and ``flags`` (:func:`lmgnn_dist.device.cpu_flags`); missing fields are None
    (empty flags)."""
    info: dict = {"vendor": None, "family": None, "mhz": None, "model": None,
                  "flags": frozenset()}
    try:
        lines = open(path).read().split("\n\n")[0].splitlines()
    except OSError:
        return info
    for line in lines:
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "cpu MHz":
            info["mhz"] = float(value)
        elif key == "model name":
            info["model"] = value
    from lmgnn_dist.device import cpu_flags

    info["flags"] = cpu_flags(path)
    return info


def nominal_peak(info: dict, threads: int) -> Optional[dict]:
    """``{"fp32", "bf16"}`` in GFLOP/s (vendor FLOP/cycle/core x ``mhz`` x ``threads``) and
    ``why`` (the :data:`PEAKS` row), or None when the clock is unknown."""
    flags: FrozenSet[str] = info["flags"]
    for vendor, family, flag, f32, b16, why in PEAKS:
        if ((vendor is None or vendor == info["vendor"])
                and (family is None or family == info["family"]) and flag in flags):
            if not info["mhz"]:
                return None
            ghz = info["mhz"] / 1000 * threads
            return {"fp32": f32 * ghz, "bf16": b16 * ghz,
                    "why": f"{why}: {f32} / {b16} FLOP/cycle/core x {info['mhz']:.0f} MHz x "
                           f"{threads} thread(s)"}
    return None


def gemm_ceiling(size: int = 1024, seconds: float = 3.0) -> Dict[str, float]:
    """GFLOP/s of ``torch.mm`` on two ``size`` x ``size`` matrices, fp32 and under
    ``torch.autocast("cpu", torch.bfloat16)``, at torch's current thread count."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    out = {}
    for precision in ("fp32", "bf16"):
        def mm():
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                torch.mm(a, b)
        mm()
        n, t0 = 0, time.perf_counter()
        while n < 3 or time.perf_counter() - t0 < seconds:
            mm()
            n += 1
        out[precision] = n * 2 * size ** 3 / (time.perf_counter() - t0) / 1e9
    return out


#: operator family -> substrings of aten op names (first match wins; the rest is "other")
FAMILIES = (
    ("matmul (linear)", ("addmm", "aten::mm", "aten::linear", "matmul")),
    ("attention", ("bmm", "baddbmm", "softmax", "scaled_dot_product", "_flash")),
    ("layer norm", ("layer_norm",)),
    ("activation (GELU)", ("gelu",)),
    ("dtype casts / copies", ("aten::to", "_to_copy", "copy_", "aten::contiguous")),
    ("fills / zeroing", ("fill_", "zero_")),
    ("elementwise / reductions", ("aten::add", "aten::mul", "aten::sum", "aten::div",
                                  "aten::sub", "aten::pow", "aten::mean")),
)


def profile_split(fn: Callable[[], None], repeats: int = 3) -> Dict[str, float]:
    """Share (0-1) of self CPU time per :data:`FAMILIES` entry over ``repeats`` calls of
    ``fn`` (after one warm-up), by ``torch.profiler``; ``"other"`` holds the rest."""
    import os

    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # no "Completed Stage" lines
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
    split: Dict[str, float] = {}
    for ev in prof.key_averages():
        fam = next((name for name, keys in FAMILIES if any(k in ev.key for k in keys)), "other")
        split[fam] = split.get(fam, 0.0) + ev.self_cpu_time_total
    total = sum(split.values()) or 1.0
    return {k: v / total for k, v in sorted(split.items(), key=lambda kv: -kv[1])}
