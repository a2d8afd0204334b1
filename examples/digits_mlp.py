"""A multilayer perceptron on scikit-learn's handwritten digits (1,797 images of 8x8 pixels, ten
classes), trained with the engine as one would with PyTorch: TensorDataset + DataLoader, an
nn.Sequential, CrossEntropyLoss and Adam.

    python examples/digits_mlp.py            # ~99% validation accuracy in a few seconds

``main()`` returns the final metrics, so tests can call it with a small budget.
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

import engine
from engine import nn
from engine.utils.data import DataLoader, TensorDataset, random_split

from classify import fit  # examples/classify.py, beside this script


def digits_datasets(split_seed: int = 0, validation_split: float = 0.2, dtype=engine.float32):
    """The digits as a (train, validation) pair of TensorDataset subsets: pixels scaled to [0, 1] and
    flattened to 64 features, labels as int64. The split is random but fixed by ``split_seed``."""
    digits = load_digits()
    x = engine.tensor(digits.data / 16.0, dtype=dtype)           # (1797, 64)
    y = engine.tensor(digits.target.astype(np.int64))           # (1797,)
    dataset = TensorDataset(x, y)
    split = engine.Generator().manual_seed(split_seed)
    train, val = random_split(dataset, [1 - validation_split, validation_split], generator=split)
    return train, val


def make_model(hidden: int = 256) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def main(epochs: int = 20, batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 1e-4,
         hidden: int = 256, seed: int = 0, split_seed: int = 0, device: str = "cpu", verbose: bool = True) -> dict:
    """Train, printing the loss and accuracy per epoch; return the final metrics. ``seed`` fixes the
    initial weights and the batch order, ``split_seed`` which digits are held out for validation;
    ``device="cuda"`` trains on a GPU."""
    engine.manual_seed(seed)
    train_set, val_set = digits_datasets(split_seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=512)

    model = make_model(hidden).to(device)
    optimizer = engine.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = engine.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    return fit(model, optimizer, scheduler, train_loader, val_loader, epochs, device, verbose)


if __name__ == "__main__":
    metrics = main()
    print(f"final validation accuracy {metrics['val_accuracy']:.2%} in {metrics['seconds']:.1f}s")
