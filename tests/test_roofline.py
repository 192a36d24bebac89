"""benchmarks/roofline.py: the CPU table, the cpuinfo parser and the profile split."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import roofline  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: {vendor}
cpu family\t: {family}
model name\t: Test CPU
cpu MHz\t\t: 2500.000
flags\t\t: fpu sse2 fma {flags}

processor\t: 1
vendor_id\t: OtherVendor
"""


@pytest.mark.parametrize("vendor,family,flags,fp32,bf16", [
    ("GenuineIntel", 6, "avx512f avx512_bf16 amx_bf16 amx_tile", 64, 1024),
    ("GenuineIntel", 6, "avx512f avx512_bf16", 64, 128),
    ("AuthenticAMD", 25, "avx512f avx512_bf16", 32, 64),
    ("AuthenticAMD", 26, "avx512f avx512_bf16", 64, 128),
    ("AuthenticAMD", 23, "avx2", 32, 32),
])
def test_nominal_peak_per_cpu(tmp_path, vendor, family, flags, fp32, bf16):
    f = tmp_path / "cpuinfo"
    f.write_text(CPUINFO.format(vendor=vendor, family=family, flags=flags))
    info = roofline.cpu_info(str(f))
    assert (info["vendor"], info["family"], info["mhz"]) == (vendor, family, 2500.0)
    peak = roofline.nominal_peak(info, threads=2)
    assert peak["fp32"] == pytest.approx(fp32 * 2.5 * 2)
    assert peak["bf16"] == pytest.approx(bf16 * 2.5 * 2)


def test_no_clock_no_peak(tmp_path):
    assert roofline.nominal_peak(roofline.cpu_info(str(tmp_path / "missing")), 1) is None


def test_profile_split_shares_sum_to_one_and_find_the_matmul():
    import torch

    a, b = torch.randn(256, 256), torch.randn(256, 256)
    split = roofline.profile_split(lambda: torch.mm(a, b), repeats=2)
    assert sum(split.values()) == pytest.approx(1.0)
    assert max(split, key=split.get) == "matmul (linear)"
