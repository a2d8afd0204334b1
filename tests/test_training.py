"""Real training with the engine: the examples in examples/ train real models to real accuracy, on
small budgets (the whole file runs in well under a minute and a half on two cores).

- an MLP and a small CNN on scikit-learn's digits reach at least 97% / 98% validation accuracy;
- a character-level LSTM and a small causal Transformer on data/tinyshakespeare.txt end with a
  validation loss well below the unigram entropy of the characters (the best a model that ignores
  context can do);
- with the same initial weights and the same batches, the engine's loss curve for the MLP is
  PyTorch's, step by step, in float64.

The examples are imported by file path and their ``main()`` called with small budgets.
"""
from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

import engine
from engine.utils.data import DataLoader

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """These models are small: one BLAS thread is fastest, and it keeps the matmuls from slowing
    down tenfold when pytest-xdist workers share the cores with multithreaded BLAS."""
    with threadpoolctl.threadpool_limits(1):
        yield


@functools.cache
def example(name: str):
    """The module examples/<name>.py, imported by path (examples/ is not a package; its scripts import
    their neighbours, as they do when run from there)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"fita_example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- digits: an MLP and a CNN --------------------------------------------------------------------

def test_digits_mlp_reaches_97_percent():
    metrics = example("digits_mlp").main(epochs=12, verbose=False)
    print(metrics)
    assert metrics["val_accuracy"] >= 0.97, metrics


def test_digits_cnn_reaches_98_percent():
    metrics = example("digits_cnn").main(epochs=8, verbose=False)
    print(metrics)
    assert metrics["val_accuracy"] >= 0.98, metrics


def test_training_is_repeatable_from_the_seed():
    mlp = example("digits_mlp")
    first = mlp.main(epochs=2, hidden=64, verbose=False)
    second = mlp.main(epochs=2, hidden=64, verbose=False)
    other = mlp.main(epochs=2, hidden=64, seed=1, verbose=False)
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert first[key] == second[key], key
    assert first["train_loss"] != other["train_loss"]


# ---- characters: an LSTM and a causal Transformer ------------------------------------------------

def test_char_data_and_unigram_entropy():
    data = example("char_lstm").CharData(seq_len=32)
    text = (EXAMPLES.parent / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    train_text = text[:len(data.train_ids)]
    assert data.decode(data.train_ids) + data.decode(data.val_ids) == text
    counts = np.unique(np.frombuffer(train_text.encode("ascii"), np.uint8), return_counts=True)[1]
    p = counts / counts.sum()
    assert data.unigram_entropy() == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)
    x, y = data.windows(data.train_ids)[3]
    assert x.shape == y.shape == (32,)
    assert data.decode(x)[1:] == data.decode(y)[:-1]            # the targets are the inputs shifted by one


def test_char_lstm_beats_the_unigram_entropy():
    metrics = example("char_lstm").main(epochs=1, max_steps=150, seq_len=32, embed_dim=32, hidden_size=128,
                                        lr=2e-2, sample_length=0, verbose=False)
    print(metrics)
    assert metrics["steps"] == 150
    assert metrics["val_loss"] < 0.8 * metrics["unigram_entropy"], metrics


def test_char_transformer_beats_the_unigram_entropy():
    metrics = example("char_transformer").main(epochs=1, max_steps=150, seq_len=32, d_model=64, num_layers=2,
                                               dropout=0.0, lr=2e-2, sample_length=0, verbose=False)
    print(metrics)
    assert metrics["steps"] == 150
    assert metrics["val_loss"] < 0.8 * metrics["unigram_entropy"], metrics


def test_char_models_generate_text():
    for name in ("char_lstm", "char_transformer"):
        ex = example(name)
        engine.manual_seed(0)
        data = ex.CharData(seq_len=16)
        model = ex.CharLSTM(data.vocab_size, 8, 16) if name == "char_lstm" else \
            ex.CharTransformer(data.vocab_size, 16, d_model=16, nhead=2, num_layers=1)
        text = ex.generate(model, data, prompt="KING:\n", length=40)
        assert text.startswith("KING:\n") and len(text) == 6 + 40
        assert set(text) <= set(data.chars)
        assert model.training                                       # generate() restores training mode


# ---- the MLP's loss curve is PyTorch's -----------------------------------------------------------

def torch_twin(model, torch):
    """A torch.nn.Sequential with the same layers as the engine's Sequential ``model``, holding its
    weights (the state_dict moves across unchanged)."""
    layers = []
    for layer in model:
        if isinstance(layer, engine.nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features))
        else:
            layers.append(getattr(torch.nn, type(layer).__name__)())
    twin = torch.nn.Sequential(*layers).double()
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


@pytest.mark.torch
@pytest.mark.parametrize("optimizer", ["Adam", "SGD"])
def test_mlp_loss_curve_equals_torch(optimizer):
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                    # as the engine's BLAS (see one_blas_thread)
    try:
        run_mlp_against_torch(torch, optimizer)
    finally:
        torch.set_num_threads(threads)


def run_mlp_against_torch(torch, optimizer: str) -> None:
    mlp = example("digits_mlp")
    engine.manual_seed(0)
    train_set, _ = mlp.digits_datasets(split_seed=0, dtype=engine.float64)
    model = mlp.make_model().double()
    twin = torch_twin(model, torch)
    kwargs = (dict(lr=2e-3, weight_decay=1e-4) if optimizer == "Adam"
              else dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4))
    opt = getattr(engine.optim, optimizer)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, optimizer)(twin.parameters(), **kwargs)
    sched = engine.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=5)
    loss_fn, tloss_fn = engine.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    # one index order (reshuffled every epoch by the engine's loader) feeds both models
    loader = DataLoader(train_set, batch_size=64, shuffle=True, generator=engine.Generator().manual_seed(1))

    losses, tlosses = [], []
    while len(losses) < 100:
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())

            topt.zero_grad()
            tloss = tloss_fn(twin(torch.from_numpy(x.numpy())), torch.from_numpy(y.numpy()))
            tloss.backward()
            topt.step()
            tlosses.append(tloss.item())
            if len(losses) == 100:
                break
        else:
            sched.step()
            tsched.step()

    assert len(set(losses)) == 100 and losses[-1] < 0.5 * losses[0]    # it trained
    np.testing.assert_allclose(losses, tlosses, rtol=1e-8, atol=0)
    tstate = twin.state_dict()
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), tstate[name].numpy(), rtol=1e-7, atol=1e-10, err_msg=name)
