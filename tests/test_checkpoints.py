"""Checkpoints: an interrupted run resumed from one ends bitwise equal to an uninterrupted run; corrupt
checkpoints are detected and skipped; retention keeps the newest N."""
import json

import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine import nn, optim
from engine.utils.data import DataLoader, TensorDataset
from workers.checkpoints import (CorruptCheckpoint, capture_state, latest_valid_checkpoint, list_checkpoints,
                                 load_checkpoint, manifest_key, prune_checkpoints, restore_state, save_checkpoint)
from workers.store import LocalStore

EPOCHS = 3


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


def _dataset():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    return TensorDataset(engine.from_numpy(x), engine.from_numpy(y))


def _build(seed, own_generator):
    """Model, Adam, scheduler and a shuffling loader; dropout draws from the global generator."""
    engine.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = optim.Adam(model.parameters(), lr=0.02)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    gen = engine.Generator().manual_seed(seed + 1) if own_generator else None
    loader = DataLoader(_dataset(), batch_size=8, shuffle=True, generator=gen)
    return model, opt, sched, loader


def _train(model, opt, sched, loader, epoch=0, step=0, stop_at=None):
    """Train to EPOCHS; with ``stop_at`` (a step), return the state captured right after that step. A
    step that ends an epoch is captured after the epoch's end (the scheduler step), as the next epoch."""
    losses = []

    def capture(epoch):
        return capture_state(model=model, optimizer=opt, scheduler=sched, loader=loader, epoch=epoch, step=step,
                             metrics={"loss": losses[-1]})
    for epoch in range(epoch, EPOCHS):
        batches = iter(loader)  # a resumed loader starts mid-epoch: count from where it stands
        for k, (x, y) in enumerate(batches, start=loader.state_dict()["batches_yielded"]):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            if step == stop_at and k + 1 < len(loader):
                return capture(epoch), losses
        sched.step()
        if step == stop_at:
            return capture(epoch + 1), losses
    return None, losses


@pytest.mark.parametrize("own_generator", [True, False])
@pytest.mark.parametrize("stop_at", [5, 8, 11])  # mid-epoch, and at the end of the first epoch (8 batches)
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(store, own_generator, stop_at):
    model, opt, sched, loader = _build(0, own_generator)
    _, full_losses = _train(model, opt, sched, loader)

    state, first_losses = _train(*_build(0, own_generator), stop_at=stop_at)
    save_checkpoint(store, "job1", state)
    engine.manual_seed(12345)  # the new process's RNG is elsewhere; the checkpoint must put it back

    resumed = _build(99, own_generator)  # fresh objects with different weights
    ckpt = latest_valid_checkpoint(store, "job1")
    assert (ckpt.info.step, ckpt.info.epoch) == (stop_at, state["epoch"])
    restore_state(ckpt.state, model=resumed[0], optimizer=resumed[1], scheduler=resumed[2], loader=resumed[3])
    _, rest_losses = _train(*resumed, epoch=ckpt.state["epoch"], step=ckpt.state["step"])

    assert first_losses + rest_losses == full_losses
    for (name, a), b in zip(model.state_dict().items(), resumed[0].state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), name
    assert resumed[1].param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_named_generators_are_restored(store):
    model = nn.Linear(2, 2)
    g = engine.Generator().manual_seed(3)
    engine.rand(5, generator=g)
    save_checkpoint(store, "j", capture_state(model=model, epoch=0, step=1, generators={"augment": g}))
    expected = engine.rand(4, generator=g).numpy()
    g2 = engine.Generator()
    restore_state(load_checkpoint(store, "j", 1).state, model=nn.Linear(2, 2), generators={"augment": g2})
    assert np.array_equal(engine.rand(4, generator=g2).numpy(), expected)


def _save(store, job, step, **kw):
    model = nn.Linear(3, 2)
    return save_checkpoint(store, job, capture_state(model=model, epoch=step // 10, step=step,
                                                     metrics={"loss": 1.0 / step}), **kw)


def test_list_and_info(store):
    for step in (10, 30, 20):
        _save(store, "j", step)
    infos = list_checkpoints(store, "j")
    assert [i.step for i in infos] == [30, 20, 10]
    top = infos[0].to_dict()
    assert set(top) == {"job_id", "step", "epoch", "metrics", "bytes", "sha256", "created_at", "key"}
    assert top["epoch"] == 3 and top["metrics"] == {"loss": 1 / 30} and len(top["sha256"]) == 64
    assert store.size(top["key"]) == top["bytes"]
    # the data file is a plain safetensors file (downloadable as-is)
    assert store.read(top["key"])[8:9] == b"{"
    assert list_checkpoints(store, "other") == []
    assert latest_valid_checkpoint(store, "other") is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete", "manifest"])
def test_corrupt_newest_falls_back_to_previous(store, damage):
    _save(store, "j", 10)
    newest = _save(store, "j", 20)
    path = store.local_path(newest.key)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    elif damage == "delete":
        path.unlink()
    else:
        store.put_bytes(manifest_key("j", 20), b"{not json")
    if damage != "manifest":
        with pytest.raises(CorruptCheckpoint):
            load_checkpoint(store, "j", 20)
    ckpt = latest_valid_checkpoint(store, "j")
    assert ckpt.info.step == 10 and ckpt.state["step"] == 10


def test_retention_keeps_newest_and_removes_orphans(store):
    for step in range(10, 60, 10):
        _save(store, "j", step, keep_last=2)
    assert [i.step for i in list_checkpoints(store, "j")] == [50, 40]
    assert len(store.list("jobs/j/checkpoints")) == 4
    # a save that died after its data file but before its manifest leaves an orphan; retention removes it
    store.put_bytes("jobs/j/checkpoints/step-000000000045.0123abcd.safetensors", b"partial")
    assert prune_checkpoints(store, "j", 1) == [40]
    assert len(store.list("jobs/j/checkpoints")) == 2


def test_fence_stops_a_stale_attempt(store):
    class LeaseLost(Exception):
        pass

    calls = []

    def fence():
        calls.append(1)
        if len(calls) == 2:  # the lease is lost while the data file is written
            raise LeaseLost

    with pytest.raises(LeaseLost):
        _save(store, "j", 10, fence=fence)
    assert list_checkpoints(store, "j") == [] and store.list("jobs/j") == []


def test_bad_job_id(store):
    with pytest.raises(ValueError):
        _save(store, "../etc", 10)


def test_manifest_is_json(store):
    info = _save(store, "j", 10)
    raw = json.loads(store.read(manifest_key("j", 10)))
    assert raw["sha256"] == info.sha256 and raw["format"] == 1
