"""Per-op overhead on small tensors: forward + backward of one op on 32x128 float32 inputs, the
engine beside PyTorch eager, in one process. Target (issue 2): engine <= 2x PyTorch per op.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/op_overhead.py [--repeat N]
"""
import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

import engine

OPS = {
    "add": lambda m, a, b: a + b,
    "mul": lambda m, a, b: a * b,
    "sub (broadcast)": lambda m, a, b: a - b[0],
    "div": lambda m, a, b: a / (b * b + 1),
    "matmul": lambda m, a, b: a @ b.T,
    "tanh": lambda m, a, b: m.tanh(a),
    "exp": lambda m, a, b: m.exp(a),
    "relu": lambda m, a, b: m.relu(a),
    "sigmoid": lambda m, a, b: m.sigmoid(a),
    "sum(dim)": lambda m, a, b: a.sum(1),
    "mean": lambda m, a, b: a.mean(),
    "softmax": lambda m, a, b: m.softmax(a, 1),
    "log_softmax": lambda m, a, b: m.log_softmax(a, 1),
    "reshape+transpose": lambda m, a, b: a.reshape(64, 64).transpose(0, 1),
    "getitem slice": lambda m, a, b: a[:, 1:64],
    "cat": lambda m, a, b: m.cat([a, b], 0),
}


def _block(lib, fn, a, b, n: int = 50) -> float:
    """Seconds per forward + backward, averaged over n calls."""
    t0 = time.perf_counter()
    for _ in range(n):
        out = fn(lib, a, b)
        out.backward(lib.ones_like(out))
    a.grad = b.grad = None
    return (time.perf_counter() - t0) / n


def time_pair(fn, engine_args, torch_args, repeat: int) -> tuple:
    """Median seconds per call for the engine and for PyTorch, their blocks interleaved so that the
    shared machine's changing load hits both alike (after 20 warm-up blocks each)."""
    samples = {"engine": [], "torch": []}
    for i in range(repeat + 20):
        for name, lib, args in (("engine", engine, engine_args), ("torch", torch, torch_args)):
            dt = _block(lib, fn, *args)
            if i >= 20:
                samples[name].append(dt)
    return statistics.median(samples["engine"]), statistics.median(samples["torch"])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    # overhead, not parallelism: one thread each (torch's thread pool spins badly on a shared 2-core box)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x, y = (rng.standard_normal((32, 128)).astype(np.float32) for _ in range(2))
    ea, eb = engine.tensor(x, requires_grad=True), engine.tensor(y, requires_grad=True)
    ta, tb = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    print(f"# per-op forward+backward, 32x128 float32; {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'op':<20}{'engine us':>11}{'torch us':>11}{'ratio':>8}")
    ratios = []
    for name, fn in OPS.items():
        e, t = time_pair(fn, (ea, eb), (ta, tb), args.repeat)
        ratios.append(e / t)
        print(f"{name:<20}{e * 1e6:>11.1f}{t * 1e6:>11.1f}{e / t:>8.2f}")
    print(f"{'geometric mean':<42}{float(np.exp(np.mean(np.log(ratios)))):>8.2f}")
    print(f"# load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores: above ~1.5 the figures are noisy)")


if __name__ == "__main__":
    main()
