"""The training loop of the digits examples (digits_mlp.py, digits_cnn.py): what a PyTorch user writes
for a classifier, once: train an epoch, step the scheduler, evaluate, print."""
from __future__ import annotations

import time

import engine
from engine import nn
from engine.utils.data import DataLoader


def evaluate(model: nn.Module, loader: DataLoader, loss_fn, device="cpu") -> tuple[float, float]:
    """Mean loss and accuracy over ``loader``."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with engine.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += loss_fn(logits, y).item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
    model.train()
    return total_loss / count, correct / count


def fit(model: nn.Module, optimizer, scheduler, train_loader: DataLoader, val_loader: DataLoader, epochs: int,
        device: str = "cpu", verbose: bool = True) -> dict:
    """Train with cross-entropy for ``epochs``, the scheduler stepped once per epoch; the final metrics."""
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        running, seen = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item() * len(y)
            seen += len(y)
        scheduler.step()
        val_loss, val_acc = evaluate(model, val_loader, loss_fn, device)
        if verbose:
            print(f"epoch {epoch:3d}  train loss {running / seen:.4f}  val loss {val_loss:.4f}  "
                  f"val acc {val_acc:.2%}  ({time.perf_counter() - start:.1f}s)")
    return {"train_loss": running / seen, "val_loss": val_loss, "val_accuracy": val_acc,
            "seconds": time.perf_counter() - start}
