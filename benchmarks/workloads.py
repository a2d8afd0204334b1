"""Reference workloads: one training step (forward + loss + backward + optimizer step, float32) of four
models, timed in the engine and in PyTorch side by side in one process, from identical initial weights
on identical data.

    .venv/bin/python benchmarks/workloads.py [--workloads W1,W2,W3,W4] [--steps N] [--warmup K]
                                             [--device cpu|cuda] [--threads T] [--rounds R] [--no-memory]
    .venv/bin/python benchmarks/workloads.py --profile [--workloads W1] [--top 20]   # cProfile one engine step

W1  MLP 784-1024-1024-10 (ReLU), batch 512, Adam, cross-entropy
W2  CNN conv(1->32,3,p1)-ReLU-maxpool2-conv(32->64,3,p1)-ReLU-maxpool2-Flatten-Linear(3136->128)-ReLU-
    Linear(128->10), batch 256 of 1x28x28, Adam, cross-entropy
W3  causal Transformer LM: vocab 256, d_model 256, 4 heads, 4 post-norm nn.TransformerEncoderLayer
    (batch_first, dim_feedforward 1024, dropout 0.0), token Embedding + learned positional Embedding +
    Linear head, seq 128, batch 32, mask from nn.Transformer.generate_square_subsequent_mask (passed with
    is_causal=True, as a PyTorch user would), AdamW, cross-entropy over all positions
W4  the seed's RNN cell next_h = tanh(h @ W_h.T + x @ W_x.T) unrolled 50 steps, hidden 128, input 64,
    batch 32, loss = sum of the FINAL h only, SGD

Method (also in docs/benchmarks.md):
- Time: each step is timed alone with time.perf_counter (after engine.cuda.synchronize() /
  torch.cuda.synchronize() on both sides of the step when --device cuda); the table shows the median.
  The same batch is reused every step (data loading is not what is measured). After the warm-up, the
  timed steps run in --rounds blocks that alternate engine and torch, so slow drift of a shared
  machine's load hits both frameworks alike; the table's "rounds" column is the range of the rounds'
  own ratios (each round's engine median over its torch median): how far the drift moved the verdict.
- Same computation: PyTorch builds the model (torch.manual_seed(0)); its state_dict is copied into the
  engine's model; the step-1 losses are printed with their difference, and the step-1 gradients of all
  parameters are compared (relative L2 error over all of them, concatenated).
- Memory: each framework runs the workload again in a fresh subprocess (only that framework imported;
  a tiny throwaway training step first, so one-time library initialisation -- ~80 MiB for PyTorch -- is
  not charged to the workload; then 5 steps). "peak RSS +MiB" is the growth of the process's resident
  set from just before the model is built to its peak (VmHWM, reset through /proc/self/clear_refs; ru_maxrss if that
  is not writable): weights, gradients, optimizer state, activations and allocator slack, comparable
  across frameworks. For the engine a second subprocess reports tracemalloc's peak (numpy reports its
  data buffers to tracemalloc, so this is every array and Python object the engine holds, without
  allocator slack); PyTorch's CPU allocator does not report to tracemalloc, so it has no such column.
  On --device cuda the child also reports the device pool's peak: torch.cuda.max_memory_reserved() and
  the growth of CuPy's default memory pool (total_bytes; the pool keeps freed blocks, so it is its peak).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

def set_threads(n: int, torch=None, engine=None) -> str:
    """Both frameworks get ``n`` CPU threads: torch.set_num_threads for PyTorch; for the engine,
    engine.set_num_threads (its split elementwise passes) and threadpoolctl's limit on the BLAS numpy
    uses."""
    if torch is not None:
        torch.set_num_threads(n)
    if engine is not None:
        engine.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return "threadpoolctl missing: numpy's BLAS keeps its default thread count"
    threadpool_limits(limits=n, user_api="blas")  # applies now, for the rest of the process
    return f"BLAS limited to {n} threads"


TARGETS = {"W1": 1.0, "W2": 0.8, "W3": 1.1, "W4": 1.5}  # engine/torch step-time ratio, at most (issue 6)


# ----------------------------------------------------------------------------------------- workloads
# Every builder takes the framework module (engine or torch): the engine has PyTorch's names, so one
# definition builds the same model in both.

def build_w1(lib):
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def build_w2(lib):
    nn = lib.nn
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


W3_VOCAB, W3_D, W3_HEADS, W3_LAYERS, W3_FF, W3_SEQ, W3_BATCH = 256, 256, 4, 4, 1024, 128, 32


def build_w3(lib):
    nn = lib.nn

    class CausalLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(W3_VOCAB, W3_D)
            self.pos = nn.Embedding(W3_SEQ, W3_D)
            self.layers = nn.ModuleList([
                nn.TransformerEncoderLayer(W3_D, W3_HEADS, dim_feedforward=W3_FF, dropout=0.0, batch_first=True)
                for _ in range(W3_LAYERS)])
            self.head = nn.Linear(W3_D, W3_VOCAB)
            self.register_buffer("positions", lib.arange(W3_SEQ), persistent=False)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(W3_SEQ), persistent=False)

        def forward(self, idx):
            x = self.tok(idx) + self.pos(self.positions)
            for layer in self.layers:
                x = layer(x, src_mask=self.mask, is_causal=True)
            return self.head(x)

    return CausalLM()


W4_HIDDEN, W4_INPUT, W4_STEPS, W4_BATCH = 128, 64, 50, 32


def build_w4(lib):
    nn = lib.nn

    class SeedRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.W_h = nn.Parameter(lib.randn(W4_HIDDEN, W4_HIDDEN) / math.sqrt(W4_HIDDEN))
            self.W_x = nn.Parameter(lib.randn(W4_HIDDEN, W4_INPUT) / math.sqrt(W4_INPUT))

        def forward(self, xs):  # xs: (steps, batch, input)
            h = lib.zeros(xs.shape[1], W4_HIDDEN, device=xs.device)
            for t in range(xs.shape[0]):
                h = lib.tanh(h @ self.W_h.T + xs[t] @ self.W_x.T)  # the seed's cell
            return h

    return SeedRNN()


def data_w1(rng):
    return {"x": rng.standard_normal((512, 784), dtype=np.float32), "y": rng.integers(0, 10, 512)}


def data_w2(rng):
    return {"x": rng.standard_normal((256, 1, 28, 28), dtype=np.float32), "y": rng.integers(0, 10, 256)}


def data_w3(rng):
    tokens = rng.integers(0, W3_VOCAB, (W3_BATCH, W3_SEQ + 1))
    return {"x": tokens[:, :-1].copy(), "y": tokens[:, 1:].copy()}


def data_w4(rng):
    return {"x": rng.standard_normal((W4_STEPS, W4_BATCH, W4_INPUT), dtype=np.float32)}


def loss_classify(lib, model, batch):
    return lib.nn.functional.cross_entropy(model(batch["x"]), batch["y"])


def loss_lm(lib, model, batch):
    logits = model(batch["x"])
    return lib.nn.functional.cross_entropy(logits.reshape(-1, W3_VOCAB), batch["y"].reshape(-1))


def loss_rnn(lib, model, batch):
    return model(batch["x"]).sum()  # the final hidden state only


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    build: Callable
    data: Callable
    loss: Callable
    optimizer: Callable  # (lib, params) -> optimizer


WORKLOADS = {
    "W1": Workload("W1", "MLP 784-1024-1024-10, batch 512, Adam", build_w1, data_w1, loss_classify,
                   lambda lib, p: lib.optim.Adam(p, lr=1e-3)),
    "W2": Workload("W2", "CNN 2xconv+pool, 2 linear, batch 256x1x28x28, Adam", build_w2, data_w2, loss_classify,
                   lambda lib, p: lib.optim.Adam(p, lr=1e-3)),
    "W3": Workload("W3", "causal Transformer LM 4x(d256,h4,ff1024,dropout 0.0), seq 128, batch 32, AdamW",
                   build_w3, data_w3, loss_lm, lambda lib, p: lib.optim.AdamW(p, lr=3e-4, weight_decay=0.01)),
    "W4": Workload("W4", "seed RNN cell x50 steps, hidden 128, input 64, batch 32, loss=sum(final h), SGD",
                   build_w4, data_w4, loss_rnn, lambda lib, p: lib.optim.SGD(p, lr=1e-4)),
}


# ------------------------------------------------------------------------------------- frameworks

class Runner:
    """One framework's model, optimizer and batch, and a timed training step."""

    def __init__(self, name: str, lib, wl: Workload, device: str, host_batch: dict, state=None, seed: int = 0):
        self.name, self.lib, self.wl, self.device = name, lib, wl, device
        lib.manual_seed(seed)
        model = wl.build(lib)
        if state is not None:  # numpy arrays keyed as PyTorch names them
            model.load_state_dict({k: lib.tensor(v) for k, v in state.items()})
        self.model = model.to(device)
        self.model.train()
        self.opt = wl.optimizer(lib, self.model.parameters())
        self.batch = {k: lib.tensor(v, device=device) for k, v in host_batch.items()}
        self.cuda = device.startswith("cuda")

    def sync(self) -> None:
        if self.cuda:
            self.lib.cuda.synchronize()

    def step(self, grads: list | None = None):
        self.opt.zero_grad(set_to_none=True)
        loss = self.wl.loss(self.lib, self.model, self.batch)
        loss.backward()
        if grads is not None:  # the loss check also compares the gradients (not timed)
            grads.extend(p.grad.detach().cpu().numpy().astype(np.float64).ravel() for p in self.model.parameters())
        self.opt.step()
        return loss

    def timed_step(self) -> tuple[float, object]:
        self.sync()
        t0 = time.perf_counter()
        loss = self.step()
        self.sync()
        return time.perf_counter() - t0, loss


def torch_state(wl: Workload, device: str, torch) -> dict:
    torch.manual_seed(0)
    return {k: v.detach().cpu().numpy().copy() for k, v in wl.build(torch).state_dict().items()}


# ----------------------------------------------------------------------------------------- memory

def _rss_now() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss(resettable: bool) -> int:
    if resettable:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child_memory(key: str, framework: str, device: str, mode: str, threads: int) -> dict:
    """Runs in a fresh subprocess: build one framework's model and take 5 steps, measuring memory."""
    lib = importlib.import_module(framework)
    set_threads(threads, *((lib, None) if framework == "torch" else (None, lib)))
    wl = WORKLOADS[key]
    host = wl.data(np.random.default_rng(0))
    cuda = device.startswith("cuda")
    _prewarm(lib, device)  # one-time library initialisation is not the workload's memory
    if cuda:
        lib.cuda.synchronize()
    gc.collect()
    out = {"workload": key, "framework": framework, "mode": mode}
    if mode == "tracemalloc":
        import tracemalloc
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    else:
        if cuda and framework == "torch":
            lib.cuda.reset_peak_memory_stats()
        pool0 = _device_pool(lib, framework) if cuda else 0
        rss0 = _rss_now()
        resettable = _reset_peak_rss()
    runner = Runner(framework, lib, wl, device, host)  # the framework's own init: values do not matter here
    for _ in range(5):
        loss = runner.step()
        float(loss.item())
    runner.sync()
    if mode == "tracemalloc":
        out["traced_peak"] = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
    else:
        out["rss_growth"] = _peak_rss(resettable) - rss0
        out["rss_method"] = "VmHWM" if resettable else "ru_maxrss"
        if cuda:
            out["device_peak"] = _device_pool(lib, framework, peak=True) - pool0
    return out


def _prewarm(lib, device: str) -> None:
    """A tiny training step touching the layer families the workloads use, so that lazy one-time
    initialisation (PyTorch: ~80 MiB of thread pools, oneDNN/MKL state and code pages on first use; CUDA
    contexts) lands before the baseline instead of being charged to the first workload."""
    nn = lib.nn
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)).to(device)
    opt = lib.optim.Adam(model.parameters())
    x, y = lib.randn(4, 1, 4, 4, device=device), lib.zeros(4, dtype=lib.int64, device=device)
    lib.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    del model, opt, x, y


def _device_pool(lib, framework: str, peak: bool = False) -> int:
    if framework == "torch":
        return lib.cuda.max_memory_reserved() if peak else lib.cuda.memory_reserved()
    from engine.backend import device as _dev
    return _dev("cuda").xp.get_default_memory_pool().total_bytes()


def measure_memory(key: str, framework: str, device: str, mode: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--_child", key, framework, mode, "--device", device,
           "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------- reporting

def machine_description(torch) -> list[str]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        rev = "unknown"
    lines = [f"date {datetime.date.today().isoformat()}; code at git {rev}; {platform.system()} {platform.machine()}, "
             f"CPU: {model}, {os.cpu_count()} logical cores",
             f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
             f"(torch.set_num_threads({torch.get_num_threads()}))"]
    try:
        from threadpoolctl import threadpool_info
        pools = [f"{p.get('internal_api')} {p.get('version') or ''} ({p.get('prefix')}, "
                 f"{p.get('num_threads')} threads)".replace("  ", " ") for p in threadpool_info()]
        lines.append("thread pools: " + "; ".join(pools))
    except ImportError:
        lines.append("thread pools: threadpoolctl not installed")
    return lines


def mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def run_workload(key: str, args, engine, torch) -> dict:
    wl = WORKLOADS[key]
    host = wl.data(np.random.default_rng(0))
    state = torch_state(wl, args.device, torch)
    runners = {"engine": Runner("engine", engine, wl, args.device, host, state),
               "torch": Runner("torch", torch, wl, args.device, host, state)}
    first, grads = {}, {}
    for name, r in runners.items():  # warm-up; step 1 is the loss and gradient check
        grads[name] = []
        first[name] = float(r.step(grads[name]).item())
        for i in range(args.warmup - 1):
            r.timed_step()
    ge, gt = np.concatenate(grads["engine"]), np.concatenate(grads["torch"])
    grad_err = float(np.linalg.norm(ge - gt) / max(np.linalg.norm(gt), 1e-30))
    del grads, ge, gt
    times = {name: [] for name in runners}
    per_round = math.ceil(args.steps / args.rounds)
    last, round_ratios = {}, []
    while len(times["torch"]) < args.steps:
        n = min(per_round, args.steps - len(times["torch"]))
        for name, r in runners.items():
            for _ in range(n):
                dt, loss = r.timed_step()
                times[name].append(dt)
            last[name] = float(loss.item())
        # each round's own ratio: how far the machine's drift moves the verdict
        round_ratios.append(statistics.median(times["engine"][-n:]) / statistics.median(times["torch"][-n:]))
    del runners
    gc.collect()
    res = {"key": key, "first": first, "last": last, "times": times, "grad_err": grad_err,
           "round_ratios": round_ratios}
    res["median"] = {n: statistics.median(t) for n, t in times.items()}
    res["iqr"] = {n: tuple(np.percentile(t, [25, 75])) for n, t in times.items()}
    res["min"] = {n: min(t) for n, t in times.items()}
    if not args.no_memory:
        res["mem"] = {fw: measure_memory(key, fw, args.device, "rss", args.threads) for fw in ("engine", "torch")}
        res["traced"] = measure_memory(key, "engine", args.device, "tracemalloc", args.threads)
    return res


def profile_engine(keys, args, engine) -> None:
    """cProfile one engine training step (after two warm-up steps) per workload: where to optimise."""
    import cProfile
    import io
    import pstats
    for key in keys:
        wl = WORKLOADS[key]
        r = Runner("engine", engine, wl, args.device, wl.data(np.random.default_rng(0)))
        for _ in range(2):
            r.step()
        r.sync()
        prof = cProfile.Profile()
        prof.enable()
        r.step()
        r.sync()
        prof.disable()
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(order).print_stats(args.top)
            text = "\n".join(line for line in buf.getvalue().splitlines() if line.strip())
            print(f"===== {key} engine step, top {args.top} by {order}\n{text}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workloads", default="W1,W2,W3,W4", help="comma-separated subset of W1,W2,W3,W4")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per framework (at least 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up steps per framework (at least 1)")
    parser.add_argument("--rounds", type=int, default=4, help="blocks the timed steps are split into, "
                        "alternating engine and torch")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads for both frameworks (default: all logical cores)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--keep-freed-memory", action="store_true", help="engine.keep_freed_memory() first, as "
                        "Fita's workers run (one process: PyTorch then runs with it too)")
    parser.add_argument("--profile", action="store_true", help="cProfile one engine step per workload "
                        "instead of benchmarking (tip: --threads 1 keeps BLAS thread hand-offs out of the profile)")
    parser.add_argument("--top", type=int, default=20, help="rows per --profile listing")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._child:
        print(json.dumps(child_memory(args._child[0], args._child[1], args.device, args._child[2], args.threads)))
        return
    keys = [k.strip().upper() for k in args.workloads.split(",") if k.strip()]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.steps < 20:
        parser.error("--steps must be at least 20")
    if args.warmup < 1:
        parser.error("--warmup must be at least 1 (the first step is the loss check)")
    args.rounds = max(1, min(args.rounds, args.steps))

    import torch
    import engine
    if args.keep_freed_memory:
        engine.keep_freed_memory()
    threads_note = set_threads(args.threads, torch, engine)
    if args.device == "cuda":
        if not torch.cuda.is_available():
            sys.exit("--device cuda: PyTorch sees no CUDA device")
        if not engine.cuda.is_available():
            sys.exit("--device cuda: the engine cannot use CUDA (is CuPy installed, with a GPU?)")

    if args.profile:
        profile_engine(keys, args, engine)
        return
    print("# Fita reference workloads: one training step (forward + loss + backward + optimizer step), float32")
    for line in machine_description(torch):
        print("# " + line)
    print(f"# threads: {args.threads} for both ({threads_note}); load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"# device {args.device}; {args.warmup} warm-up + {args.steps} timed steps per framework, in "
          f"{args.rounds} alternating blocks; median of per-step wall time (perf_counter"
          f"{', synchronised' if args.device == 'cuda' else ''})")
    print("# W3 uses dropout 0.0 (so both frameworks compute the same thing); W4's loss is the sum of the "
          "final h only")
    print("# host malloc: " + ("freed memory kept for reuse (engine.keep_freed_memory(), as Fita's workers run; one "
                               "process, so PyTorch runs with it too)" if engine._memory.kept else "glibc's defaults"))
    print()

    results = []
    for key in keys:
        wl = WORKLOADS[key]
        print(f"{key}: {wl.title}", flush=True)
        r = run_workload(key, args, engine, torch)
        results.append(r)
        e, t = r["first"]["engine"], r["first"]["torch"]
        print(f"    step-1 loss  engine {e:.6f}  torch {t:.6f}  |diff| {abs(e - t):.2e} "
              f"(rel {abs(e - t) / max(abs(t), 1e-12):.1e})")
        print(f"    step-1 gradients: |g_engine - g_torch| / |g_torch| = {r['grad_err']:.1e} (all parameters)")
        e, t = r["last"]["engine"], r["last"]["torch"]
        print(f"    last loss    engine {e:.6f}  torch {t:.6f}  (after {args.warmup + args.steps} steps; "
              "rounding differences may grow over training)")
        for fw in ("engine", "torch"):
            lo, hi = r["iqr"][fw]
            print(f"    {fw:<6} median {r['median'][fw] * 1e3:8.2f} ms  min {r['min'][fw] * 1e3:8.2f}  "
                  f"p25-p75 {lo * 1e3:.2f}-{hi * 1e3:.2f}", flush=True)
        print("    ratio per round (engine/torch medians): " + " ".join(f"{x:.2f}" for x in r["round_ratios"]))

    load = os.getloadavg()
    print(f"# load average after: {' '.join(f'{x:.2f}' for x in load)}"
          + (f"  -- above the {os.cpu_count()} cores: other processes competed for the CPU, expect noise"
             if load[0] > (os.cpu_count() or 1) else ""))
    print()
    mem = not args.no_memory
    cuda = args.device == "cuda"
    head = f"{'workload':<9}{'engine ms':>11}{'torch ms':>10}{'ratio':>7}{'rounds':>11}{'target':>8}{'met':>5}"
    if mem:
        head += f"{'eng RSS+MiB':>13}{'torch RSS+MiB':>15}{'eng traced MiB':>16}"
        if cuda:
            head += f"{'eng dev MiB':>13}{'torch dev MiB':>15}"
    head += f"{'step-1 |dloss|':>16}{'grad rel err':>14}"
    print(head)
    print("-" * len(head))
    for r in results:
        em, tm = r["median"]["engine"], r["median"]["torch"]
        ratio = em / tm
        target = TARGETS[r["key"]]
        spread = f"{min(r['round_ratios']):.2f}-{max(r['round_ratios']):.2f}"
        row = (f"{r['key']:<9}{em * 1e3:>11.2f}{tm * 1e3:>10.2f}{ratio:>7.2f}{spread:>11}{'<=' + str(target):>8}"
               f"{'yes' if ratio <= target else 'NO':>5}")
        if mem:
            me, mt, tr = r["mem"]["engine"], r["mem"]["torch"], r["traced"]
            row += (f"{mib(me.get('rss_growth')):>13}{mib(mt.get('rss_growth')):>15}"
                    f"{mib(tr.get('traced_peak')):>16}")
            if cuda:
                row += f"{mib(me.get('device_peak')):>13}{mib(mt.get('device_peak')):>15}"
        row += f"{abs(r['first']['engine'] - r['first']['torch']):>16.2e}{r['grad_err']:>14.1e}"
        print(row)
    if mem:
        print()
        print("# memory: each framework re-runs the workload in a fresh subprocess (a tiny throwaway step to")
        print("#   absorb one-time library init, then build + 5 steps); RSS+MiB = peak resident set (VmHWM")
        print("#   after resetting it via /proc/self/clear_refs) minus the resident set just before the model")
        print("#   was built: weights, grads, optimizer state, activations and allocator slack.")
        print("#   eng traced = tracemalloc's peak in another engine subprocess (numpy reports its buffers to")
        print("#   tracemalloc; PyTorch's CPU allocator does not, so there is no torch column).")
        if cuda:
            print("#   dev MiB = growth of CuPy's default pool (total_bytes) / torch.cuda.max_memory_reserved().")
        errors = [(r["key"], fw, m["error"]) for r in results
                  for fw, m in list(r["mem"].items()) + [("engine tracemalloc", r["traced"])] if "error" in m]
        for key, fw, err in errors:
            print(f"# memory run failed for {key} {fw}: {err}")


if __name__ == "__main__":
    main()
