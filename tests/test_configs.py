"""configs/: the example job specs. Every one parses (YAML, as the API reads it), passes the dry
build (parameters and FLOPs reported), and the fast ones really train: a few epochs with
workers.build and the engine directly (no service), and the loss falls.

``train()`` below is a plain training loop over what workers.build makes from a spec; it is not the
service's loop (workers/train.py), only enough to show that the example specs learn.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import threadpoolctl

import engine
from engine import nn
from engine.utils.data import DataLoader
from workers.build import (build_loss, build_model, build_optimizer, build_scheduler, compute_loss, count_correct,
                           dry_build, steps_per_epoch)
from workers.datasets import load_dataset
from workers.spec import JobSpec, parse_spec, validate_spec

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
EXPECTED = ["char-lstm", "char-transformer", "digits-cnn", "digits-mlp", "iris", "regression-mlp"]


def config_paths() -> list[Path]:
    return sorted(CONFIGS.glob("*.yaml"))


def load(name: str) -> JobSpec:
    return parse_spec((CONFIGS / f"{name}.yaml").read_text(encoding="utf-8"), "application/yaml")


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Small models train fastest on one BLAS thread (and do not slow down under pytest-xdist)."""
    with threadpoolctl.threadpool_limits(1):
        yield


def test_the_examples_are_all_there():
    assert [p.stem for p in config_paths()] == EXPECTED


@pytest.mark.parametrize("path", config_paths(), ids=lambda p: p.stem)
def test_config_parses_and_dry_builds(path: Path):
    text = path.read_text(encoding="utf-8")
    spec = parse_spec(text, "application/yaml")
    assert spec.name == path.stem                       # the file is named after the job
    result = dry_build(spec)
    assert result.parameters > 0 and result.trainable_parameters == result.parameters
    assert result.flops_per_step > 0 and result.forward_flops_per_sample > 0
    assert result.memory["total"] > 0
    assert result.steps_per_epoch >= 1 and result.total_steps == result.steps_per_epoch * spec.training.epochs
    assert result.warnings == []
    # what the API stores is itself a valid spec that builds the same model
    again = dry_build(validate_spec(result.spec))
    assert again.parameters == result.parameters


def test_config_models_fit_their_datasets():
    """The figures the examples' comments rely on."""
    lstm, transformer = dry_build(load("char-lstm")), dry_build(load("char-transformer"))
    assert lstm.dataset["vocab_size"] == 62 and lstm.output_shape == [64, 62]
    assert transformer.output_shape == [64, 62]
    assert transformer.spec["model"]["nodes"]["encoder"]["causal"] is True
    assert dry_build(load("digits-cnn")).spec["data"]["layout"] == "image"
    assert dry_build(load("regression-mlp")).output_shape == [1]


# ---- real training -------------------------------------------------------------------------------

def evaluate(model: nn.Module, loader: DataLoader, loss_fn) -> tuple[float, float | None]:
    """Mean loss per sample and accuracy (None for regression) over ``loader``."""
    model.eval()
    total, count, correct, seen = 0.0, 0, 0, 0
    with engine.no_grad():
        for x, y in loader:
            out = model(x)
            total += compute_loss(loss_fn, out, y).item() * len(y)
            count += len(y)
            c = count_correct(out, y, loss_fn)
            if c is not None:
                correct, seen = correct + c[0], seen + c[1]
    model.train()
    return total / count, (correct / seen if seen else None)


def train(spec: JobSpec, epochs: int | None = None) -> dict:
    """Trains ``spec`` on the CPU for ``epochs`` (default: the spec's) and returns per-epoch figures:
    ``train_loss`` (mean over the epoch's batches), ``val_loss``, ``val_accuracy``, and the validation
    loss of the untrained model (``initial_val_loss``)."""
    epochs = epochs or spec.training.epochs
    if epochs != spec.training.epochs:
        spec = validate_spec({**spec.normalized(), "training": {**spec.normalized()["training"], "epochs": epochs}})
    engine.manual_seed(spec.training.seed)
    data = load_dataset(spec.data, seed=spec.training.seed)
    loader = DataLoader(data.train, batch_size=spec.data.batch_size, shuffle=spec.data.shuffle,
                        drop_last=spec.data.drop_last)
    val_loader = DataLoader(data.val, batch_size=512)
    model = build_model(spec)
    loss_fn = build_loss(spec)
    optimizer = build_optimizer(spec, model)
    n_steps = steps_per_epoch(data.info.n_train, spec.data.batch_size, spec.data.drop_last)
    scheduler = build_scheduler(spec, optimizer, n_steps)
    per_step = spec.scheduler is not None and spec.scheduler.interval == "step"
    history = {"initial_val_loss": evaluate(model, val_loader, loss_fn)[0], "train_loss": [], "val_loss": [],
               "val_accuracy": []}
    model.train()
    for _ in range(epochs):
        running, batches = 0.0, 0
        for x, y in loader:
            optimizer.zero_grad()
            loss = compute_loss(loss_fn, model(x), y)
            loss.backward()
            if spec.training.grad_clip_norm:
                nn.utils.clip_grad_norm_(model.parameters(), spec.training.grad_clip_norm)
            optimizer.step()
            if scheduler is not None and per_step:
                scheduler.step()
            running, batches = running + loss.item(), batches + 1
        if scheduler is not None and not per_step:
            scheduler.step()
        val_loss, accuracy = evaluate(model, val_loader, loss_fn)
        history["train_loss"].append(running / batches)
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(accuracy)
    assert all(math.isfinite(v) for v in history["train_loss"] + history["val_loss"])
    return history


def test_iris_trains():
    h = train(load("iris"))                  # all 50 epochs: about a second
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_loss"][-1] < 0.5 * h["initial_val_loss"]
    assert h["val_accuracy"][-1] >= 0.85


def test_digits_mlp_trains():
    h = train(load("digits-mlp"), epochs=3)
    assert h["train_loss"][-1] < 0.5 * h["train_loss"][0]
    assert h["val_loss"][-1] < h["val_loss"][0] < h["initial_val_loss"]
    assert h["val_accuracy"][-1] >= 0.9


def test_regression_mlp_trains():
    h = train(load("regression-mlp"), epochs=10)
    assert h["val_loss"][-1] < 0.8 * h["initial_val_loss"]
    assert h["val_accuracy"][-1] is None
