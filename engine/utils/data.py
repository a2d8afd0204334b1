"""``engine.utils.data``: datasets, samplers, collation and ``DataLoader``, as ``torch.utils.data``.

Map-style datasets only (``__getitem__`` + ``__len__``); there is no IterableDataset.

Workers. ``num_workers`` is accepted but batches are always loaded in the calling process, one after
another: the engine's datasets are in-memory arrays, where worker processes would cost more (pickling
batches across processes) than they save. Code written for PyTorch with ``num_workers=4`` runs unchanged.

Shuffling. ``shuffle=True`` without a ``generator`` draws a fresh seed from the global generator
(``engine.manual_seed``) at every epoch, as PyTorch does; with ``generator=g`` each epoch's order comes
from ``g``'s continuing stream. Either way the orders repeat from the same seed.

Fast path. When the dataset is a ``TensorDataset`` (or a ``Subset`` of one, as ``random_split`` makes)
and ``collate_fn`` is the default, a batch is one fancy index into each tensor instead of
``batch_size`` samples stacked by ``default_collate``; the batches are the same.

Resuming mid-epoch. ``iter(loader)`` draws the epoch's whole order (every batch of indices) up front,
and the loader counts the batches its newest iterator has yielded. ``loader.state_dict()`` returns::

    {"indices": int64 Tensor,       # the epoch's sample indices in the order they are yielded
     "batch_sizes": int64 Tensor,   # the size of each batch (None when batch_size=None: one index each)
     "batches_yielded": int,        # batches handed out so far in this epoch
     "generator": uint8 Tensor}     # the sampler's engine.Generator state after drawing this order,
                                    # or None when the sampler has no generator of its own
     # (before the first epoch, "indices" and "batch_sizes" are None)

It holds only tensors, ints and None, so ``engine.save`` writes it into a checkpoint. The epoch's
order is ``state_dict()["indices"]``. ``loader.load_state_dict(state)`` restores the generator and
makes the next ``iter(loader)`` yield the saved epoch from batch ``batches_yielded`` on (set it to
``k`` to start from batch k); the epochs after that draw new orders exactly as an uninterrupted run
would. Shuffling without a ``generator`` draws from the global generator instead: save
``engine.get_rng_state()`` in the same checkpoint and restore it with ``engine.set_rng_state``.
"""
from __future__ import annotations

import bisect
import collections.abc
import itertools
import math
import numbers
import re
import warnings

import numpy as np

from ..creation import as_tensor, randint, randperm, tensor
from ..dtypes import float64, int64
from ..ops.shape import stack
from ..random import Generator, default_generator
from ..tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "Subset", "ConcatDataset", "random_split", "default_collate",
           "default_convert", "Sampler", "SequentialSampler", "RandomSampler", "BatchSampler", "DataLoader"]


# ---- datasets ------------------------------------------------------------------------------------

class Dataset:
    """A map-style dataset: subclasses define ``__getitem__(index)`` and ``__len__()``."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __add__(self, other: "Dataset") -> "ConcatDataset":
        return ConcatDataset([self, other])


class TensorDataset(Dataset):
    """Sample ``i`` is ``tuple(t[i] for t in tensors)``."""

    def __init__(self, *tensors: Tensor):
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset takes tensors; argument {i} is a {type(t).__name__} "
                                "(convert it with engine.tensor or engine.from_numpy)")
        sizes = [t.size(0) if t.ndim else None for t in tensors]
        if tensors and (None in sizes or len(set(sizes)) > 1):
            raise ValueError(f"Size mismatch between tensors: TensorDataset needs every tensor to have the "
                             f"same size in dimension 0 (one row per sample), got first dimensions {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return self.tensors[0].size(0)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __len__(self) -> int:
        return len(self.indices)


class ConcatDataset(Dataset):
    """The samples of several datasets one after another."""

    @staticmethod
    def cumsum(sequence) -> list:
        return list(itertools.accumulate(len(d) for d in sequence))

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable: ConcatDataset needs at least one dataset")
        self.cumulative_sizes = self.cumsum(self.datasets)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a ConcatDataset of {n} samples")
        if idx < 0:
            idx += n
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        offset = self.cumulative_sizes[which - 1] if which else 0
        return self.datasets[which][idx - offset]


def random_split(dataset, lengths, generator: Generator = default_generator) -> list:
    """Split ``dataset`` into non-overlapping random ``Subset``s of the given lengths. ``lengths`` may be
    fractions summing to 1: each split gets ``floor(len * frac)`` samples and the remainder is dealt
    out one by one from the first split on, as PyTorch does."""
    lengths = list(lengths)
    n = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for i, frac in enumerate(lengths):
            if not 0 <= frac <= 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1 (got {frac})")
        counts = [int(math.floor(n * frac)) for frac in lengths]
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an empty dataset.")
        lengths = counts
    if sum(lengths) != n:
        raise ValueError(f"Sum of input lengths does not equal the length of the input dataset! "
                         f"(lengths {lengths} sum to {sum(lengths)}, the dataset has {n} samples; pass "
                         "counts that sum to its length, or fractions that sum to 1)")
    order = randperm(n, generator=generator).tolist()
    return [Subset(dataset, order[end - size:end]) for end, size in zip(itertools.accumulate(lengths), lengths)]


# ---- collation -----------------------------------------------------------------------------------

_STR_OR_OBJECT = re.compile(r"[SaUO]")  # numpy dtype codes no tensor can hold


def _is_namedtuple(x) -> bool:
    return isinstance(x, tuple) and hasattr(x, "_fields")


def default_collate(batch):
    """Stack a list of samples into a batch, as PyTorch does: tensors are stacked along a new first
    dimension; numpy arrays and numpy scalars become tensors (keeping their dtype) and are stacked;
    Python ints become an int64 tensor (bools a bool tensor), floats a float64 tensor; strings stay a
    list; dicts, named tuples and sequences are collated field by field (tuples come back as lists)."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if isinstance(elem, np.ndarray):
        if _STR_OR_OBJECT.search(elem.dtype.str):
            raise TypeError(_collate_error(f"numpy arrays of dtype {elem.dtype}"))
        return default_collate([as_tensor(b) for b in batch])
    if isinstance(elem, np.generic) and not isinstance(elem, (np.str_, np.bytes_)):
        return as_tensor(batch)
    if isinstance(elem, float):
        return tensor(batch, dtype=float64)
    if isinstance(elem, numbers.Integral):
        return tensor(batch)  # int64, or bool for bools
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        out = {key: default_collate([d[key] for d in batch]) for key in elem}
        return _rebuild(type(elem), out)
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(s)) for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if any(len(x) != size for x in batch):
            raise RuntimeError(f"each element in list of batch should be of equal size (got lengths "
                               f"{[len(x) for x in batch]}); pad the samples or pass a collate_fn")
        fields = [default_collate(list(s)) for s in zip(*batch)]
        return fields if isinstance(elem, (tuple, list)) else _rebuild(type(elem), fields)
    raise TypeError(_collate_error(type(elem).__name__))


def _collate_error(found: str) -> str:
    return (f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found "
            f"{found}. Pass a collate_fn to DataLoader to batch other samples")


def _rebuild(kind, value):
    """``kind(value)`` for a container subclass, falling back to the plain container when its
    constructor does not take one (as PyTorch does)."""
    try:
        return kind(value)
    except TypeError:
        return value


def default_convert(data):
    """Without automatic batching (``batch_size=None``): numpy arrays and scalars become tensors,
    recursively inside dicts and sequences (tuples become lists); everything else is left alone."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        return data if _STR_OR_OBJECT.search(data.dtype.str) else as_tensor(data)
    if isinstance(data, np.generic) and not isinstance(data, (np.str_, np.bytes_)):
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return _rebuild(type(data), {key: default_convert(v) for key, v in data.items()})
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        items = [default_convert(d) for d in data]
        return items if isinstance(data, (tuple, list)) else _rebuild(type(data), items)
    return data


# ---- samplers ------------------------------------------------------------------------------------

class Sampler:
    """Yields dataset indices; subclasses define ``__iter__`` (and ``__len__`` when they can)."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __iter__")


class SequentialSampler(Sampler):
    """0, 1, ..., len(data_source) - 1."""

    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self) -> int:
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation (repeated and cut to ``num_samples`` when that is given), or with
    ``replacement=True`` ``num_samples`` independent draws. Without a ``generator``, each iteration
    seeds a fresh one from the global generator, as PyTorch does."""

    def __init__(self, data_source, replacement: bool = False, num_samples: int | None = None,
                 generator: Generator | None = None):
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got replacement={replacement!r}")
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator must be an engine.Generator or None, got {type(generator).__name__}")
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        n = self.num_samples
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got num_samples={n!r}"
                             + (" (the dataset is empty)" if num_samples is None else ""))

    @property
    def num_samples(self) -> int:
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        gen = self.generator
        if gen is None:
            seed = int(default_generator.integers(0, 2 ** 63 - 1, (), np.int64))
            gen = Generator().manual_seed(seed)
        if self.replacement:
            for _ in range(self.num_samples // 32):
                yield from randint(0, n, (32,), generator=gen).tolist()
            yield from randint(0, n, (self.num_samples % 32,), generator=gen).tolist()
        else:
            for _ in range(self.num_samples // n):
                yield from randperm(n, generator=gen).tolist()
            yield from randperm(n, generator=gen).tolist()[:self.num_samples % n]

    def __len__(self) -> int:
        return self.num_samples


class BatchSampler(Sampler):
    """Groups ``sampler``'s indices into lists of ``batch_size`` (the last one shorter unless
    ``drop_last``)."""

    def __init__(self, sampler, batch_size: int, drop_last: bool):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size!r}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got drop_last={drop_last!r}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        it = iter(self.sampler)
        while batch := list(itertools.islice(it, self.batch_size)):
            if len(batch) < self.batch_size and self.drop_last:
                return
            yield batch

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


# ---- DataLoader ----------------------------------------------------------------------------------

class DataLoader:
    """Batches of ``dataset`` in sampler order. See the module docstring for workers, the TensorDataset
    fast path and resuming mid-epoch (``state_dict`` / ``load_state_dict``)."""

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool | None = None, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn=None, drop_last: bool = False,
                 generator: Generator | None = None):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing (batches are loaded in this process either way).")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle: shuffle with "
                             "sampler=RandomSampler(dataset) or drop the sampler")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, "
                                 "sampler, and drop_last: the batch sampler decides all of them")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive "
                             "with drop_last")
        if sampler is None:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.dataset = dataset
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self.num_workers = num_workers
        self.generator = generator
        if collate_fn is None:
            collate_fn = default_collate if batch_sampler is not None else default_convert
        self.collate_fn = collate_fn
        self._plan: list = []       # this epoch's batches of indices (single indices without batching)
        self._yielded = 0           # how many of them the newest iterator has handed out
        self._started = False
        self._epoch = 0             # counts iterators, so an older one does not move the position
        self._resume_at: int | None = None  # set by load_state_dict: the next iterator starts here

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def __len__(self) -> int:
        return len(self.batch_sampler if self._auto_collation else self.sampler)

    def __iter__(self):
        # the order is drawn here, not at the first next(), so state_dict() has it as soon as an
        # epoch starts; only the newest iterator moves the recorded position
        if self._resume_at is not None:
            start, self._resume_at = self._resume_at, None
        else:
            self._plan = list(self.batch_sampler if self._auto_collation else self.sampler)
            start = 0
        self._yielded, self._started = start, True
        self._epoch += 1
        return self._batches(self._epoch, self._plan, start)

    def _batches(self, epoch: int, plan: list, start: int):
        fetch = self._fetcher()
        for k in range(start, len(plan)):
            batch = fetch(plan[k])
            if epoch == self._epoch:
                self._yielded = k + 1
            yield batch

    def _fetcher(self):
        """The function that turns one entry of the plan into what the loader yields."""
        if not self._auto_collation:
            return lambda i: self.collate_fn(self.dataset[i])
        source = _tensor_rows(self.dataset) if self.collate_fn is default_collate else None
        if source is None:
            return lambda batch: self.collate_fn([self.dataset[i] for i in batch])
        tensors, rows = source

        def fetch(batch):
            idx = np.asarray(batch, dtype=np.int64)
            if rows is not None:
                idx = rows[idx]
            return [t[idx] for t in tensors]  # a list, as default_collate makes of the sample tuples
        return fetch

    # ---- resuming ----------------------------------------------------------------------------
    def _state_generator(self) -> Generator | None:
        gen = getattr(self.sampler, "generator", None)
        return gen if isinstance(gen, Generator) else None

    def state_dict(self) -> dict:
        """Where the loader stands in the current epoch (see the module docstring)."""
        gen = self._state_generator()
        state = {"indices": None, "batch_sizes": None, "batches_yielded": self._yielded,
                 "generator": gen.get_state() if gen is not None else None}
        if self._started:
            batches = self._plan if self._auto_collation else [[i] for i in self._plan]
            flat = [i for b in batches for i in b]
            if not all(isinstance(i, numbers.Integral) for i in flat):
                raise TypeError("DataLoader.state_dict() needs integer sample indices; this loader's sampler "
                                "yields other keys, so its position cannot be saved as tensors")
            state["indices"] = tensor(flat, dtype=int64)
            if self._auto_collation:
                state["batch_sizes"] = tensor([len(b) for b in batches], dtype=int64)
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Resume from ``state_dict()``: the next ``iter(self)`` continues the saved epoch."""
        missing = {"indices", "batch_sizes", "batches_yielded", "generator"} - set(state_dict)
        if missing:
            raise KeyError(f"DataLoader.load_state_dict: the state lacks {sorted(missing)}; pass what "
                           "DataLoader.state_dict() returned")
        indices, sizes = state_dict["indices"], state_dict["batch_sizes"]
        done, gen_state = int(state_dict["batches_yielded"]), state_dict["generator"]
        gen = self._state_generator()
        if gen_state is not None and gen is None:
            raise ValueError("the saved state holds a generator's state but this DataLoader's sampler has no "
                             "engine.Generator: build the loader with generator= as it was when saved")
        if indices is None:
            plan = []
        else:
            flat = _int_list(indices)
            if (sizes is None) == self._auto_collation:
                raise ValueError("the saved state was made by a DataLoader "
                                 f"{'without' if sizes is None else 'with'} automatic batching; build this one "
                                 "with the same batch_size / batch_sampler")
            if flat and max(flat) >= len(self.dataset):
                raise ValueError(f"the saved order refers to sample {max(flat)} but the dataset has "
                                 f"{len(self.dataset)} samples: resume with the dataset it was saved with")
            if sizes is None:
                plan = flat
            else:
                sizes = _int_list(sizes)
                if sum(sizes) != len(flat):
                    raise ValueError(f"corrupt DataLoader state: batch_sizes sum to {sum(sizes)} but there are "
                                     f"{len(flat)} indices")
                ends = list(itertools.accumulate(sizes))
                plan = [flat[end - size:end] for end, size in zip(ends, sizes)]
        if not 0 <= done <= len(plan):
            raise ValueError(f"batches_yielded={done} is outside this epoch's {len(plan)} batches")
        if gen_state is not None:
            gen.set_state(gen_state)
        self._plan, self._yielded, self._started = plan, done, indices is not None
        self._resume_at = done if done < len(plan) else None


def _int_list(x) -> list:
    return x.tolist() if isinstance(x, Tensor) else [int(i) for i in x]


def _tensor_rows(dataset):
    """``(tensors, rows)`` when ``dataset`` is a TensorDataset, possibly inside Subsets, with the
    stock ``__getitem__``s: sample ``i`` is then ``t[rows[i]]`` for each tensor (``rows`` None: ``t[i]``).
    None for any other dataset."""
    rows = None
    while getattr(type(dataset), "__getitem__", None) is Subset.__getitem__:
        idx = dataset.indices
        idx = np.asarray(idx.tolist() if isinstance(idx, Tensor) else idx, dtype=np.int64)
        rows = idx if rows is None else idx[rows]
        dataset = dataset.dataset
    if getattr(type(dataset), "__getitem__", None) is TensorDataset.__getitem__:
        return dataset.tensors, rows
    return None
