"""Character-level data for the text examples: a text as character ids, split into training and
validation parts, cut into (input, next-character) windows. Shared by char_lstm.py and
char_transformer.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import engine
from engine.utils.data import TensorDataset

DATA = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"


class CharData:
    """A text as character ids, split into a training and a validation part (the last
    ``val_fraction``), each cut into non-overlapping windows of ``seq_len + 1`` characters: the
    model reads the first ``seq_len`` and predicts the last ``seq_len``."""

    def __init__(self, path: Path = DATA, seq_len: int = 64, val_fraction: float = 0.1):
        text = Path(path).read_text(encoding="utf-8")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = engine.from_numpy(np.fromiter((self.stoi[c] for c in text), np.int64, len(text)))
        n_val = int(len(text) * val_fraction)
        self.train_ids, self.val_ids = ids[:-n_val], ids[-n_val:]
        self.seq_len = seq_len

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def windows(self, ids) -> TensorDataset:
        n = (len(ids) - 1) // self.seq_len
        x = ids[:n * self.seq_len].reshape(n, self.seq_len)
        y = ids[1:n * self.seq_len + 1].reshape(n, self.seq_len)
        return TensorDataset(x, y)

    def unigram_entropy(self) -> float:
        """The entropy of the training text's character frequencies, in nats per character."""
        counts = engine.zeros(self.vocab_size).index_add(0, self.train_ids, engine.ones(len(self.train_ids)))
        p = counts[counts > 0] / len(self.train_ids)
        return -(p * p.log()).sum().item()

    def encode(self, text: str):
        return engine.tensor([self.stoi[c] for c in text])

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids.tolist())
