#!/usr/bin/env bash
# The GPU checks in one run, for a session lent a machine with an NVIDIA GPU (no Fita install needed:
# the engine, its tests and the benchmark need numpy, CuPy, torch, scipy, safetensors and pytest, which
# such a machine's python3 has). From the repository root:
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh      (the device tool sets OUT; default ./gpu-out)
#
# 1. the machine: nvidia-smi, versions, whether the engine sees the GPU;
# 2. the CUDA-marked engine tests (every op, layer, loss and optimizer on cuda against the CPU/torch);
# 3. benchmarks/workloads.py --device cuda: W1-W4, engine vs PyTorch, step times and device memory.
# The service's GPU-queue test (tests/test_service.py) needs Redis and the API's packages: not run here.
# Each step has its own time limit, so a hang in one still leaves the others' logs in $OUT.
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    nvidia-smi
    python3 -c 'import sys, numpy, cupy, torch; print(sys.version); print("numpy", numpy.__version__,
"cupy", cupy.__version__, "torch", torch.__version__, "cuda", torch.version.cuda)'
    python3 -c 'import engine; print("engine sees CUDA:", engine.cuda.is_available())'
} > "$OUT/machine.txt" 2>&1

timeout 420 python3 -m pytest -q -m cuda -p no:cacheprovider -x --no-header -rs \
    tests/test_cuda.py tests/test_nn_basic.py tests/test_nn_conv.py tests/test_nn_norm.py tests/test_nn_loss.py \
    tests/test_nn_rnn.py tests/test_nn_transformer.py tests/test_optim.py tests/test_serialization.py \
    tests/test_data.py > "$OUT/cuda-tests.txt" 2>&1
echo "cuda tests: exit $?" >> "$OUT/machine.txt"

timeout 300 python3 benchmarks/workloads.py --device cuda --steps 30 > "$OUT/workloads-cuda.txt" 2>&1
echo "workloads: exit $?" >> "$OUT/machine.txt"
tail -n 20 "$OUT/machine.txt" "$OUT/cuda-tests.txt" "$OUT/workloads-cuda.txt"
