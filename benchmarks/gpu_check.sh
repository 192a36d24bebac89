#!/usr/bin/env bash
# The GPU checks of issue 14, in one run, without DGL (the GPU machine has torch, transformers
# and triton but no DGL): the block-sparse attention kernels' tests (Triton vs the PyTorch
# reference), the LM encoder's throughput and peak memory on CUDA in fp32/bf16 at lengths 128
# and 512 (encode, and a with-gradient training step with and without gradient
# checkpointing), and the sparse-attention benchmark at length 512.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]       # default: $OUT (the device tool's) or /tmp/gpu_check
#
# Each part has its own time limit and its output file; a failing part does not stop the
# others. Record the figures in benchmarks/RESULTS_gpu.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python}

$py - <<'PY' 2>&1 | tee "$out/versions.txt"
import torch, transformers
print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)
try:
    import triton; print("triton", triton.__version__)
except ImportError as exc:
    print("triton missing:", exc)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
PY

echo "== kernel tests" | tee "$out/kernels_tests.txt"
timeout 240 $py -m pytest -q --confcutdir=tests/kernels tests/kernels 2>&1 | tail -30 \
    | tee -a "$out/kernels_tests.txt"

echo "== LM encoder on the device" | tee "$out/lm_gpu.txt"
timeout 300 $py benchmarks/bench_lm_gpu.py --device cuda --out "$out/lm_gpu.json" 2>&1 \
    | tee -a "$out/lm_gpu.txt"

echo "== block-sparse attention, length 512" | tee "$out/sparse_attention.txt"
timeout 180 $py benchmarks/bench_sparse_attention.py --device cuda --op-seqs 512 \
    --encoder-seqs 128,512 2>&1 | tee -a "$out/sparse_attention.txt"
