"""Random number generators: ``engine.Generator`` (seedable, passable to every random function and
to DataLoader) and the default generators behind ``engine.manual_seed``."""
from __future__ import annotations

import json

import numpy as np

from .backend import device as Device


class Generator:
    """A PCG64 stream on the CPU, or CuPy's generator on a CUDA device. ``get_state()`` is a uint8
    tensor (JSON of the bit generator's state), so it can be checkpointed without pickle."""

    def __init__(self, device="cpu"):
        self.device = Device(device)
        self._seed = 67280421310721  # PyTorch's default seed
        self._reset()

    def _reset(self):
        if self.device.type == "cpu":
            self._gen = np.random.Generator(np.random.PCG64(self._seed))
        else:
            cp = self.device.xp
            with cp.cuda.Device(self.device.index):
                self._gen = cp.random.RandomState(self._seed)

    def manual_seed(self, seed: int) -> "Generator":
        seed = int(seed)
        if seed < 0:
            seed &= (1 << 64) - 1
        self._seed = seed
        self._reset()
        return self

    def seed(self) -> int:
        s = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self):
        from .tensor import Tensor
        if self.device.type != "cpu":
            raise RuntimeError("get_state() of a CUDA generator is not supported; re-seed it instead")
        state = {"seed": self._seed, "bit_generator": self._gen.bit_generator.state}
        raw = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy()
        return Tensor._make(raw)

    def set_state(self, new_state) -> "Generator":
        raw = np.asarray(new_state.numpy() if hasattr(new_state, "numpy") else new_state, dtype=np.uint8)
        try:
            state = json.loads(raw.tobytes().decode())
            self._seed = state["seed"]
            self._gen = np.random.Generator(np.random.PCG64())
            self._gen.bit_generator.state = state["bit_generator"]
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"set_state: not a state from Generator.get_state() ({e})") from None
        return self

    # the streams the random functions draw from (numpy's Generator on the CPU, CuPy's RandomState)
    def uniform(self, shape, dtype):
        """Uniform on [0, 1) in ``dtype``: 1.0 is never drawn."""
        if np.dtype(dtype) == np.float16:
            # k / 2**11 for a random 11-bit k (float16's precision, as PyTorch draws halves): rounding a
            # wider draw to float16 would give 1.0 for draws above 1 - 2**-12
            draw = self._gen.integers if self.device.type == "cpu" else self._gen.randint
            return (draw(0, 1 << 11, size=shape, dtype=np.int64) * 2.0 ** -11).astype(dtype)
        draw = self._gen.random if self.device.type == "cpu" else self._gen.random_sample
        return draw(shape, dtype=_draw_dtype(dtype)).astype(dtype, copy=False)

    def normal(self, shape, dtype):
        return self._gen.standard_normal(shape, dtype=_draw_dtype(dtype)).astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype):
        draw = self._gen.integers if self.device.type == "cpu" else self._gen.randint
        return draw(low, high, size=shape, dtype=np.int64).astype(dtype, copy=False)

    def permutation(self, n):
        return self._gen.permutation(n).astype(np.int64)


def _draw_dtype(dtype):
    """float32 is drawn directly; other float types (float16, float64) from float64 draws."""
    return np.float32 if np.dtype(dtype) == np.float32 else np.float64


default_generator = Generator("cpu")
_cuda_generators: dict = {}


def generator_for(device, generator: Generator | None) -> Generator:
    """The generator a random function uses on ``device``: the one passed, else the default."""
    dev = Device(device)
    if generator is not None:
        if generator.device is not dev:
            raise RuntimeError(f"Expected a '{dev.type}' device type for generator but found "
                               f"'{generator.device.type}'")
        return generator
    if dev.type == "cpu":
        return default_generator
    gen = _cuda_generators.get(dev)
    if gen is None:
        gen = _cuda_generators[dev] = Generator(dev)
        gen.manual_seed(default_generator.initial_seed())
    return gen


def manual_seed(seed: int) -> Generator:
    """Seed every default generator (CPU and each CUDA device already in use)."""
    default_generator.manual_seed(seed)
    for gen in _cuda_generators.values():
        gen.manual_seed(seed)
    return default_generator


def seed() -> int:
    s = default_generator.seed()
    for gen in _cuda_generators.values():
        gen.manual_seed(s)
    return s


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state():
    return default_generator.get_state()


def set_rng_state(new_state) -> None:
    default_generator.set_state(new_state)
