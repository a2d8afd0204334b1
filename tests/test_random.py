"""Random generators: engine.manual_seed makes the random creators repeatable, engine.Generator gives
independent repeatable streams, and get_state/set_state round trip (the streams themselves are not
PyTorch's: only their behaviour is compared)."""
import pickle

import numpy as np
import pytest

import engine


@pytest.fixture(autouse=True)
def _restore_global_rng():
    state = engine.get_rng_state()
    seed = engine.initial_seed()
    yield
    engine.manual_seed(seed)
    engine.set_rng_state(state)


DRAWS = {
    "rand": lambda **kw: engine.rand(3, 4, **kw),
    "randn": lambda **kw: engine.randn(5, **kw),
    "randint": lambda **kw: engine.randint(0, 100, (6,), **kw),
    "randperm": lambda **kw: engine.randperm(8, **kw),
    "normal": lambda **kw: engine.normal(2.0, 3.0, (4,), **kw),
    "rand float64": lambda **kw: engine.rand(3, dtype=engine.float64, **kw),
    "rand float16": lambda **kw: engine.rand(3, dtype=engine.float16, **kw),
    "randn float64": lambda **kw: engine.randn(3, dtype=engine.float64, **kw),
    "rand_like": lambda **kw: engine.rand_like(engine.zeros(2, 2), **kw),
    "randn_like": lambda **kw: engine.randn_like(engine.zeros(2, 2), **kw),
}


def values(t):
    return t.tolist()


@pytest.mark.parametrize("name", list(DRAWS))
def test_manual_seed_makes_draws_repeatable(name):
    draw = DRAWS[name]
    engine.manual_seed(1234)
    first = [values(draw()) for _ in range(3)]
    engine.manual_seed(1234)
    again = [values(draw()) for _ in range(3)]
    assert first == again
    assert first[0] != first[1]  # the stream advances
    engine.manual_seed(4321)
    assert values(draw()) != first[0]


def test_manual_seed_covers_a_mixed_sequence_of_draws():
    def run():
        return [values(engine.rand(2)), values(engine.randint(0, 10, (3,))), values(engine.randn(2, 2)),
                values(engine.randperm(5))]
    engine.manual_seed(0)
    a = run()
    engine.manual_seed(0)
    assert run() == a


def test_manual_seed_and_initial_seed():
    g = engine.manual_seed(7)
    assert isinstance(g, engine.Generator)
    assert g is engine.default_generator
    assert engine.initial_seed() == 7
    engine.manual_seed(2 ** 40 + 3)
    assert engine.initial_seed() == 2 ** 40 + 3


def test_seed_picks_a_fresh_seed():
    s1 = engine.seed()
    s2 = engine.seed()
    assert s1 != s2
    assert engine.initial_seed() == s2


@pytest.mark.parametrize("name", list(DRAWS))
def test_generators_with_the_same_seed_give_the_same_stream(name):
    draw = DRAWS[name]
    g1 = engine.Generator().manual_seed(99)
    g2 = engine.Generator()
    assert g2.manual_seed(99) is g2
    assert [values(draw(generator=g1)) for _ in range(2)] == [values(draw(generator=g2)) for _ in range(2)]


@pytest.mark.parametrize("name", list(DRAWS))
def test_a_generator_does_not_touch_the_default_stream(name):
    draw = DRAWS[name]
    engine.manual_seed(5)
    plain = [values(draw()) for _ in range(2)]
    engine.manual_seed(5)
    g = engine.Generator().manual_seed(5)
    mixed = []
    for _ in range(2):
        draw(generator=g)
        mixed.append(values(draw()))
    assert mixed == plain


def test_generators_are_independent_of_each_other():
    g1 = engine.Generator().manual_seed(1)
    g2 = engine.Generator().manual_seed(2)
    ref = engine.Generator().manual_seed(1)
    a = [values(engine.rand(3, generator=g1)) for _ in range(3)]
    for _ in range(5):
        engine.rand(3, generator=g2)
    b = [values(engine.rand(3, generator=ref)) for _ in range(3)]
    assert a == b
    assert values(engine.rand(3, generator=g2)) != values(engine.rand(3, generator=g1))


def test_generator_defaults():
    g = engine.Generator()
    assert g.device == engine.device("cpu")
    assert isinstance(g.initial_seed(), int)
    assert engine.Generator().initial_seed() == g.initial_seed()  # a fixed default seed, as in torch
    assert values(engine.rand(4, generator=engine.Generator())) == values(engine.rand(4, generator=engine.Generator()))


def test_generator_state_round_trip():
    g = engine.Generator().manual_seed(42)
    engine.rand(5, generator=g)
    state = g.get_state()
    assert isinstance(state, engine.Tensor) and state.dtype is engine.uint8 and state.ndim == 1
    after = [values(engine.randn(3, generator=g)), values(engine.randint(0, 9, (4,), generator=g))]
    g.set_state(state)
    assert [values(engine.randn(3, generator=g)), values(engine.randint(0, 9, (4,), generator=g))] == after
    # the state is a snapshot: drawing more does not change it
    assert g.get_state().tolist() != state.tolist()
    assert g.set_state(state) is g
    assert values(engine.randn(3, generator=g)) == after[0]


def test_state_moves_a_stream_to_another_generator():
    src = engine.Generator().manual_seed(3)
    engine.rand(7, generator=src)
    dst = engine.Generator().set_state(src.get_state())
    assert dst.initial_seed() == 3
    assert values(engine.rand(4, generator=dst)) == values(engine.rand(4, generator=src))


def test_state_survives_bytes_and_pickle():
    """A checkpoint stores the state as bytes (e.g. in safetensors) or a numpy array."""
    g = engine.Generator().manual_seed(11)
    engine.rand(2, generator=g)
    state = g.get_state()
    expected = values(engine.rand(3, generator=g))
    raw = state.numpy().tobytes()
    g.set_state(engine.tensor(np.frombuffer(raw, dtype=np.uint8)))
    assert values(engine.rand(3, generator=g)) == expected
    g.set_state(pickle.loads(pickle.dumps(state)))
    assert values(engine.rand(3, generator=g)) == expected
    g.set_state(state.numpy())
    assert values(engine.rand(3, generator=g)) == expected


def test_global_rng_state_round_trip():
    engine.manual_seed(8)
    engine.randn(4)
    state = engine.get_rng_state()
    assert state.dtype is engine.uint8
    a = [values(engine.rand(3)), values(engine.randint(5, (3,)))]
    engine.set_rng_state(state)
    assert [values(engine.rand(3)), values(engine.randint(5, (3,)))] == a
    assert engine.default_generator.get_state().tolist() == engine.get_rng_state().tolist()


def test_state_tensor_is_not_shared_with_the_generator():
    g = engine.Generator().manual_seed(1)
    state = g.get_state()
    copy = state.clone()
    state.zero_()  # scribbling over the returned tensor must not affect the generator
    assert values(engine.rand(2, generator=g)) == values(engine.rand(2, generator=engine.Generator().set_state(copy)))


@pytest.mark.parametrize("bad", [engine.zeros(4, dtype=engine.uint8), engine.tensor([1, 2, 3], dtype=engine.uint8)])
def test_set_state_refuses_garbage(bad):
    with pytest.raises(RuntimeError, match="get_state"):
        engine.Generator().set_state(bad)


# ---- what the draws look like -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_rand_is_uniform_on_half_open_unit_interval(dtype):
    x = engine.rand(200_000, dtype=getattr(engine, dtype), generator=engine.Generator().manual_seed(0)).numpy()
    assert x.dtype == np.dtype(dtype)
    assert x.min() >= 0.0 and x.max() < 1.0  # 1.0 must never be drawn (float16 rounding included)
    assert abs(float(x.astype(np.float64).mean()) - 0.5) < 0.01
    hist, _ = np.histogram(x.astype(np.float64), bins=10, range=(0, 1))
    assert hist.min() > 0.9 * len(x) / 10


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_randn_is_standard_normal(dtype):
    x = engine.randn(200_000, dtype=getattr(engine, dtype),
                     generator=engine.Generator().manual_seed(0)).numpy().astype(np.float64)
    assert abs(x.mean()) < 0.01
    assert abs(x.std() - 1.0) < 0.01
    assert 0.30 < np.mean(x > 0.5) < 0.32  # P(Z > 0.5) = 0.3085


def test_normal_scales_and_shifts():
    x = engine.normal(5.0, 2.0, (100_000,), generator=engine.Generator().manual_seed(1)).numpy()
    assert abs(x.mean() - 5.0) < 0.05 and abs(x.std() - 2.0) < 0.05


@pytest.mark.parametrize("low, high", [(0, 2), (-3, 4), (10, 11)])
def test_randint_covers_exactly_low_to_high_exclusive(low, high):
    x = engine.randint(low, high, (5000,), generator=engine.Generator().manual_seed(2))
    assert x.dtype is engine.int64
    assert set(x.tolist()) == set(range(low, high))


def test_randperm_is_a_permutation_and_repeatable():
    g = engine.Generator().manual_seed(4)
    p = engine.randperm(50, generator=g)
    assert sorted(p.tolist()) == list(range(50))
    assert p.tolist() != list(range(50))
    assert engine.randperm(50, generator=engine.Generator().manual_seed(4)).tolist() == p.tolist()
