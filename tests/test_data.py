"""engine.utils.data: datasets, random_split, collation and DataLoader against torch.utils.data where the
behaviour is deterministic (lengths, batching, collated types); shuffling by its properties and its
repeatability; the TensorDataset fast path; resuming an epoch from a saved position."""
import io
from collections import namedtuple

import numpy as np
import pytest

import engine
import engine.utils.data as data
from engine.utils.data import (BatchSampler, ConcatDataset, DataLoader, Dataset, RandomSampler,
                               SequentialSampler, Subset, TensorDataset, default_collate, random_split)

torch = pytest.importorskip("torch")
import torch.utils.data as tdata  # noqa: E402

pytestmark = pytest.mark.torch


class Squares(Dataset):
    """A plain map-style dataset (no fast path): sample i is (x_i, i*i)."""

    def __init__(self, n, dim=2):
        self.x = engine.arange(float(n * dim)).reshape(n, dim)

    def __getitem__(self, i):
        return self.x[i], i * i

    def __len__(self):
        return len(self.x)


def tensors(n=10):
    return engine.arange(float(n * 3)).reshape(n, 3), engine.arange(n) * 10


def batches_as_lists(loader):
    return [[t.tolist() for t in b] for b in loader]


def first_column(loader):
    """The sample order a loader over TensorDataset(arange-based x, ...) yields."""
    return [int(v) // 3 for b in loader for v in b[0][:, 0].tolist()]


# ---- datasets ------------------------------------------------------------------------------------

def test_tensor_dataset_indexes_every_tensor_and_checks_sizes():
    x, y = tensors(4)
    ds = TensorDataset(x, y)
    assert len(ds) == 4
    sx, sy = ds[2]
    assert sx.tolist() == [6.0, 7.0, 8.0] and sy.item() == 20
    with pytest.raises(ValueError, match=r"same size in dimension 0.*\[4, 3\]"):
        TensorDataset(x, y[:3])
    with pytest.raises(TypeError, match="argument 1 is a ndarray"):
        TensorDataset(x, np.zeros(4))


def test_subset_concat_and_add_index_as_torch():
    a, b = Squares(3), Squares(4)
    ta, tb = tdata.TensorDataset(torch.arange(3)), tdata.TensorDataset(torch.arange(4))
    cat, tcat = a + b, ta + tb
    assert isinstance(cat, ConcatDataset) and len(cat) == len(tcat) == 7
    assert cat.cumulative_sizes == tcat.cumulative_sizes == [3, 7]
    for i in range(-7, 7):
        assert cat[i][1] == int(tcat[i][0]) ** 2
    with pytest.raises(IndexError, match="index 7 is out of range for a ConcatDataset of 7"):
        cat[7]
    sub = Subset(b, [3, 1])
    assert len(sub) == 2 and sub[0][1] == 9 and sub[-1][1] == 1
    xs, ys = Subset(TensorDataset(*tensors()), [5, 2])[[0, 1]]
    assert ys.tolist() == [50, 20]


@pytest.mark.parametrize("n, lengths", [(10, [0.3, 0.3, 0.4]), (11, [0.5, 0.5]), (7, [0.1, 0.2, 0.7]),
                                        (5, [2, 3]), (3, [0.25, 0.75])])
def test_random_split_lengths_match_torch_and_cover_the_dataset(n, lengths):
    ds = Squares(n)
    splits = random_split(ds, lengths, generator=engine.Generator().manual_seed(0))
    tsplits = tdata.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
    assert [len(s) for s in splits] == [len(s) for s in tsplits]
    assert sorted(i for s in splits for i in s.indices) == list(range(n))
    again = random_split(ds, lengths, generator=engine.Generator().manual_seed(0))
    assert [s.indices for s in again] == [s.indices for s in splits]


def test_random_split_errors_and_warnings():
    with pytest.raises(ValueError, match=r"lengths \[2, 2\] sum to 4, the dataset has 5"):
        random_split(Squares(5), [2, 2])
    with pytest.raises(ValueError, match="Fraction at index 0 is not between 0 and 1"):
        random_split(Squares(5), [1.5, -0.5])
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        random_split(Squares(2), [0.9, 0.1])
    engine.manual_seed(3)
    a = random_split(Squares(20), [10, 10])[0].indices  # the global generator by default
    engine.manual_seed(3)
    assert random_split(Squares(20), [10, 10])[0].indices == a


# ---- collation -----------------------------------------------------------------------------------

Point = namedtuple("Point", "x y")


def assert_same_collated(e, t, path="batch"):
    """engine's and torch's default_collate agree in structure, types, dtypes and values."""
    if isinstance(t, torch.Tensor):
        assert isinstance(e, engine.Tensor), f"{path}: {type(e).__name__} is not a Tensor"
        assert e.dtype.name == str(t.dtype).replace("torch.", ""), f"{path}: {e.dtype} vs {t.dtype}"
        assert e.tolist() == t.tolist(), path
    elif isinstance(t, dict):
        assert type(e) is type(t) and list(e) == list(t), path
        for k in t:
            assert_same_collated(e[k], t[k], f"{path}.{k}")
    elif isinstance(t, (list, tuple)):
        assert type(e) is type(t) and len(e) == len(t), f"{path}: {type(e).__name__} vs {type(t).__name__}"
        for i, (a, b) in enumerate(zip(e, t)):
            assert_same_collated(a, b, f"{path}[{i}]")
    else:
        assert e == t, path


def test_default_collate_matches_torch():
    rng = np.random.default_rng(0)
    samples = []
    for i in range(3):
        arr = rng.standard_normal((2, 2)).astype(np.float32)
        samples.append({"int": i, "float": i / 2, "bool": i % 2 == 0, "str": f"s{i}", "np": arr,
                        "np_int": np.int32(i), "np_float": np.float64(i / 4), "point": Point(i, [i, i + 1]),
                        "tuple": (i, 2.5), "tensor": arr})
    tsamples = [{**s, "tensor": torch.from_numpy(s["tensor"])} for s in samples]
    esamples = [{**s, "tensor": engine.from_numpy(s["tensor"])} for s in samples]
    assert_same_collated(default_collate(esamples), tdata.default_collate(tsamples))
    # samples that are tuples (what TensorDataset yields) give a list of batches, as torch
    e = default_collate([(engine.tensor([1.0]), 1), (engine.tensor([2.0]), 2)])
    t = tdata.default_collate([(torch.tensor([1.0]), 1), (torch.tensor([2.0]), 2)])
    assert_same_collated(e, t)


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="found set. Pass a collate_fn"):
        default_collate([{1}, {2}])
    with pytest.raises(TypeError, match="numpy arrays of dtype <U1"):
        default_collate([np.array(["a"]), np.array(["b"])])


def test_default_convert_matches_torch():
    sample = {"a": np.arange(3), "b": (np.float32(1.5), "s"), "c": 2}
    assert_same_collated(data.default_convert(sample), tdata.default_convert(sample))


# ---- samplers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, bs, drop", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False), (2, 5, True)])
def test_batch_sampler_and_loader_length_match_torch(n, bs, drop):
    assert list(BatchSampler(range(n), bs, drop)) == list(tdata.BatchSampler(range(n), bs, drop))
    assert len(BatchSampler(range(n), bs, drop)) == len(tdata.BatchSampler(range(n), bs, drop))
    loader = DataLoader(Squares(n), batch_size=bs, drop_last=drop)
    assert len(loader) == len(list(loader)) == len(tdata.DataLoader(range(n), batch_size=bs, drop_last=drop))


def test_sampler_argument_checks():
    with pytest.raises(ValueError, match="batch_size should be a positive integer value, but got batch_size=0"):
        BatchSampler(range(3), 0, False)
    with pytest.raises(ValueError, match="drop_last should be a boolean"):
        BatchSampler(range(3), 2, 1)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(range(3), replacement=1)
    with pytest.raises(ValueError, match=r"num_samples=0 \(the dataset is empty\)"):
        RandomSampler(range(0))
    with pytest.raises(TypeError, match="engine.Generator"):
        RandomSampler(range(3), generator=torch.Generator())


def test_random_sampler_permutations_and_replacement():
    g = engine.Generator().manual_seed(0)
    assert sorted(RandomSampler(range(7), generator=g)) == list(range(7))
    long = list(RandomSampler(range(4), num_samples=10, generator=g))
    assert len(long) == 10 and sorted(long[:4]) == sorted(long[4:8]) == list(range(4))  # whole permutations
    drawn = list(RandomSampler(range(5), replacement=True, num_samples=70, generator=g))
    assert len(drawn) == 70 and set(drawn) == set(range(5))
    assert list(SequentialSampler(range(3))) == [0, 1, 2]


# ---- DataLoader ----------------------------------------------------------------------------------

def test_loader_batches_in_order_with_the_default_collate():
    got = batches_as_lists(DataLoader(Squares(5, dim=1), batch_size=2))
    assert got == [[[[0.0], [1.0]], [0, 1]], [[[2.0], [3.0]], [4, 9]], [[[4.0]], [16]]]
    one = next(iter(DataLoader(Squares(3), batch_size=None)))  # no batching: the sample converted
    assert isinstance(one, list) and one[0].tolist() == [0.0, 1.0] and one[1] == 0
    custom = DataLoader(Squares(4), batch_size=2, collate_fn=lambda b: [s[1] for s in b])
    assert list(custom) == [[0, 1], [4, 9]]
    bs = DataLoader(Squares(5), batch_sampler=[[4, 0], [2]])
    assert [b[1].tolist() for b in bs] == [[16, 0], [4]] and len(bs) == 2


def test_loader_argument_checks():
    ds = Squares(4)
    with pytest.raises(ValueError, match="sampler option is mutually exclusive with shuffle"):
        DataLoader(ds, sampler=SequentialSampler(ds), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(ds, batch_size=2, batch_sampler=[[0]])
    with pytest.raises(ValueError, match="mutually exclusive with drop_last"):
        DataLoader(ds, batch_size=None, drop_last=True)
    with pytest.raises(ValueError, match="num_workers option should be non-negative"):
        DataLoader(ds, num_workers=-1)


def test_num_workers_loads_in_process_with_the_same_batches():
    ds = TensorDataset(*tensors())
    assert batches_as_lists(DataLoader(ds, batch_size=3, num_workers=4)) == batches_as_lists(DataLoader(ds, batch_size=3))


def test_shuffle_is_repeatable_from_the_global_seed_and_new_each_epoch():
    ds = TensorDataset(*tensors(20))
    engine.manual_seed(0)
    loader = DataLoader(ds, batch_size=6, shuffle=True)
    e1, e2 = first_column(loader), first_column(loader)
    assert sorted(e1) == sorted(e2) == list(range(20)) and e1 != e2
    engine.manual_seed(0)
    assert [first_column(loader), first_column(loader)] == [e1, e2]


def test_an_explicit_generator_continues_its_stream_and_ignores_the_global_one():
    ds = TensorDataset(*tensors(20))

    def epochs(seed):
        loader = DataLoader(ds, batch_size=6, shuffle=True, generator=engine.Generator().manual_seed(seed))
        engine.seed()  # a random global state must not matter
        return [first_column(loader) for _ in range(3)]
    a = epochs(1)
    assert epochs(1) == a and epochs(2) != a
    assert a[0] != a[1] != a[2]


def test_tensor_dataset_fast_path_gives_the_default_collate_batches(monkeypatch):
    x, y = tensors(13)
    ds = TensorDataset(x, y)
    inner = random_split(ds, [10, 3], generator=engine.Generator().manual_seed(0))[0]
    nested = Subset(inner, [9, 0, 4, 4, 1, 7, 2])

    def slow(d):  # any other collate_fn disables the fast path
        return batches_as_lists(DataLoader(d, batch_size=4, collate_fn=lambda b: default_collate(b)))
    expected = {name: slow(d) for name, d in (("ds", ds), ("inner", inner), ("nested", nested))}

    def no_stacking(*args, **kwargs):
        raise AssertionError("the fast path must not collate samples one by one")
    monkeypatch.setattr(data, "stack", no_stacking)
    for name, d in (("ds", ds), ("inner", inner), ("nested", nested)):
        batches = list(DataLoader(d, batch_size=4))
        assert all(isinstance(b, list) for b in batches)
        assert [[t.tolist() for t in b] for b in batches] == expected[name], name


# ---- resuming mid-epoch ------------------------------------------------------------------------

def take(it, k):
    return [[t.tolist() for t in next(it)] for _ in range(k)]


def through_a_file(state):
    buf = io.BytesIO()
    engine.save(state, buf)
    buf.seek(0)
    return engine.load(buf)


@pytest.mark.parametrize("explicit_generator", [True, False])
def test_resume_mid_epoch_gives_the_uninterrupted_batches(explicit_generator):
    ds = TensorDataset(*tensors(11))

    def make():
        gen = engine.Generator().manual_seed(7) if explicit_generator else None
        return DataLoader(ds, batch_size=3, shuffle=True, generator=gen)

    engine.manual_seed(0)
    loader = make()
    reference = [batches_as_lists(loader) for _ in range(3)]

    engine.manual_seed(0)
    loader = make()
    assert batches_as_lists(loader) == reference[0]
    it = iter(loader)
    assert take(it, 2) == reference[1][:2]
    state = through_a_file(loader.state_dict())
    rng_state = engine.get_rng_state()
    assert state["batches_yielded"] == 2 and state["batch_sizes"].tolist() == [3, 3, 3, 2]
    assert [int(v) for v in state["indices"][:3].tolist()] == [int(r[0]) // 3 for r in reference[1][0][0]]
    assert (state["generator"] is not None) == explicit_generator

    engine.manual_seed(123)  # a fresh process: other seeds, a fresh loader
    resumed = make()
    resumed.load_state_dict(state)
    engine.set_rng_state(rng_state)  # what a checkpoint also restores when shuffling uses the global RNG
    assert batches_as_lists(resumed) == reference[1][2:]
    assert batches_as_lists(resumed) == reference[2]


def test_start_from_batch_k_and_read_the_epoch_order():
    loader = DataLoader(TensorDataset(*tensors(10)), batch_size=4)
    assert loader.state_dict()["indices"] is None
    full = batches_as_lists(loader)
    state = loader.state_dict()
    assert state["indices"].tolist() == list(range(10)) and state["batches_yielded"] == 3
    state["batches_yielded"] = 1
    loader.load_state_dict(state)
    assert batches_as_lists(loader) == full[1:]
    assert batches_as_lists(loader) == full  # then whole epochs again


def test_only_the_newest_iterator_moves_the_position():
    loader = DataLoader(Squares(6), batch_size=2)
    old = iter(loader)
    next(old)
    new = iter(loader)
    next(new)
    next(old)
    assert loader.state_dict()["batches_yielded"] == 1


def test_load_state_dict_rejects_states_that_do_not_fit():
    ds = TensorDataset(*tensors(10))
    loader = DataLoader(ds, batch_size=4, shuffle=True, generator=engine.Generator())
    list(loader)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="refers to sample 9 but the dataset has 5 samples"):
        DataLoader(TensorDataset(*tensors(5)), batch_size=4).load_state_dict({**state, "generator": None})
    with pytest.raises(ValueError, match="no engine.Generator: build the loader with generator="):
        DataLoader(ds, batch_size=4, shuffle=True).load_state_dict(state)
    with pytest.raises(ValueError, match="with automatic batching"):
        DataLoader(ds, batch_size=None).load_state_dict({**state, "generator": None})
    with pytest.raises(ValueError, match="batches_yielded=5 is outside this epoch's 3 batches"):
        loader.load_state_dict({**state, "batches_yielded": 5})
    with pytest.raises(KeyError, match=r"lacks \['generator'\]"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "generator"})


@pytest.mark.cuda
def test_fast_path_on_cuda_tensors_stays_on_the_device():
    x, y = tensors(7)
    ds = TensorDataset(x.to("cuda"), y.to("cuda"))
    sub = random_split(ds, [5, 2], generator=engine.Generator().manual_seed(0))[0]
    cpu = random_split(TensorDataset(x, y), [5, 2], generator=engine.Generator().manual_seed(0))[0]
    for gpu_batch, cpu_batch in zip(DataLoader(sub, batch_size=2), DataLoader(cpu, batch_size=2)):
        assert all(t.device == engine.device("cuda:0") for t in gpu_batch)
        assert [t.cpu().tolist() for t in gpu_batch] == [t.tolist() for t in cpu_batch]
