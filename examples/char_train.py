"""What the two character models (char_lstm.py, char_transformer.py) share: sampling a character, the
validation loss, and the training loop with gradient clipping and a per-step learning-rate schedule.
``logits_of(model, x)`` is each model's (N, L) ids -> (N, L, vocab) logits."""
from __future__ import annotations

import math
import time

import engine
from engine import nn
from engine.utils.data import DataLoader


def loaders(data, batch_size: int) -> tuple[DataLoader, DataLoader]:
    """Shuffled training windows (whole batches only) and the validation windows of a CharData."""
    return (DataLoader(data.windows(data.train_ids), batch_size=batch_size, shuffle=True, drop_last=True),
            DataLoader(data.windows(data.val_ids), batch_size=256))


def one_cycle(optimizer, lr: float, epochs: int, steps_per_epoch: int, max_steps: int | None):
    """A one-cycle schedule over ``epochs`` (or ``max_steps``, whichever is fewer); (scheduler, total steps)."""
    total_steps = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    return engine.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                pct_start=0.1), total_steps


def sample_from(logits, temperature: float = 0.8):
    """One id per row of ``logits`` (N, V), drawn from softmax(logits / temperature) by inverting the
    cumulative distribution at a uniform draw."""
    cdf = (logits / temperature).softmax(-1).cumsum(-1)
    u = engine.rand(logits.shape[0], 1, dtype=cdf.dtype, device=cdf.device)
    return (cdf < u).sum(-1).clamp(max=logits.shape[-1] - 1)


def evaluate(model: nn.Module, logits_of, loader: DataLoader, loss_fn, device="cpu") -> float:
    """Mean loss per character over ``loader``."""
    model.eval()
    total, count = 0.0, 0
    with engine.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            total += loss_fn(logits_of(model, x).flatten(0, 1), y.flatten()).item() * y.numel()
            count += y.numel()
    model.train()
    return total / count


def fit(model: nn.Module, logits_of, optimizer, scheduler, train_loader: DataLoader, val_loader: DataLoader, *,
        epochs: int, total_steps: int, clip: float, entropy: float, device: str = "cpu",
        verbose: bool = True, sample=None) -> dict:
    """Train until ``epochs`` or ``total_steps`` (the scheduler is stepped per batch), printing the losses
    per epoch and, at the end, ``sample()`` (a generated text) when given; the final metrics."""
    loss_fn = nn.CrossEntropyLoss()
    start, step = time.perf_counter(), 0
    for epoch in range(1, epochs + 1):
        running, seen = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(logits_of(model, x).flatten(0, 1), y.flatten())
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            running, seen, step = running + loss.item(), seen + 1, step + 1
            if step == total_steps:
                break
        val_loss = evaluate(model, logits_of, val_loader, loss_fn, device)
        if verbose:
            print(f"epoch {epoch:3d}  step {step:5d}  train loss {running / seen:.4f}  val loss {val_loss:.4f} "
                  f"({val_loss / entropy:.0%} of the unigram entropy)  ({time.perf_counter() - start:.1f}s)")
        if step == total_steps:
            break
    seconds = time.perf_counter() - start
    if verbose and sample is not None:
        print("---\n" + sample() + "\n---")
    return {"train_loss": running / seen, "val_loss": val_loss, "unigram_entropy": entropy,
            "val_bits_per_char": val_loss / math.log(2), "steps": step, "seconds": seconds}
