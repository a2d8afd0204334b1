"""The training loop a worker process runs for one attempt of one job: ``run_job``.

``run_job(job_id, settings=..., records=..., store=..., device="cpu")`` acquires a new attempt (fencing
off any earlier one), reads the job's spec from its record, seeds the engine with ``training.seed``,
loads the dataset (phase ``loading_data``), builds the model, loss, optimizer and scheduler, resumes
from the newest valid checkpoint if there is one, trains (phase ``training``, validation per epoch in
phase ``evaluating``), writes the final weights (phase ``saving``) and moves the job to its final
status, which it returns:

``succeeded``  the weights are in the store (see "Weights" below) and the final metrics in the record.
``failed``     with ``error.code`` ``nan_loss`` (a NaN or infinite training loss, at the step named in
               the message and the ``failed`` event's data), ``timeout`` (``training.max_runtime_s``, capped
               by ``Settings.job_timeout_s``, was reached: a checkpoint is taken first),
               ``storage_error`` (the artifact store failed), ``invalid_spec`` / ``dataset_error`` (the
               stored spec or its dataset no longer works) or ``internal_error`` (anything else). The
               message is the exception's text, never a traceback (the traceback goes to the log).
``cancelled``  ``Records.request_cancel`` was seen at the next step's lease check; checkpoints are kept.
``paused``     ``Records.request_pause`` was seen: a checkpoint was taken first, so ``Records.resume``
               and a new ``run_job`` continue bitwise where it stopped.
``queued``     the caller's ``shutdown`` event was set (a SIGTERM to the worker): a checkpoint was taken
               and ``Records.interrupt`` re-queued the job (or ``failed`` after too many restarts, which
               is then returned): the caller enqueues it again when ``queued`` comes back.
``deferred``   not a record status: the tenant already runs ``FITA_QUOTA_RUNNING`` jobs; the job is still
               queued and untouched, and the caller enqueues it again a little later.
``lost``       not a record status: another attempt took the job over (or it was re-queued behind this
               attempt's back). Nothing more was written, not even a status; the caller just returns.

Fencing. Every write names this attempt's id, and ``Records`` refuses it once the lease has moved on
(``LeaseLost``, turned into ``lost``). ``check_lease`` runs after every optimizer step, so an orphaned
attempt stops at its next step; checkpoints are fenced before their data and again before their
manifest; the final weights are written only after one more lease check.

Resuming. A checkpoint is the state right after a step: mid-epoch (``epoch`` in progress, the
DataLoader's position inside it), or after an epoch's end work (validation, the scheduler's epoch
step, ``epoch_end``) as ``epoch + 1`` — never between an epoch's last batch and that work (see
workers/checkpoints.py). A step-interval checkpoint, pause, timeout or shutdown that falls on an
epoch's last batch is therefore taken after the epoch's end work. A resumed attempt first calls
``trim_metrics_after(checkpoint step)`` (step 0 without a checkpoint), so metrics that a dead attempt
wrote past its checkpoint are re-recorded once, never duplicated. The checkpoint also carries the run
time so far (``max_runtime_s`` counts over all attempts, up to the checkpoint) and the best weights
so far, so the best-weights file of a resumed run is the uninterrupted run's.

Loss read-back. The loss of a step stays a tensor on the device; every ``loss_sync_every`` steps (and
before a checkpoint, a stop or an epoch's end) the pending losses are stacked and read back in one
transfer, then checked for NaN/inf and handed to the MetricsWriter, one record per step. On a GPU this
avoids a device sync per step; a NaN is still reported at the exact step it appeared (the job fails
at most ``loss_sync_every - 1`` steps later, and never checkpoints weights after it).

Weights. ``engine.save`` has no way to add metadata of one's own, so the final weights are written
with ``engine.save`` and then re-packed with the same tensors and the engine's metadata plus Fita's:
``jobs/<id>/weights.safetensors`` (the model's state_dict on the CPU, PyTorch's keys) and
``jobs/<id>/weights-best.safetensors`` (the state after the epoch with the lowest validation loss, or
lowest mean training loss without a validation split). Their safetensors metadata (string values,
JSON-encoded) holds ``spec`` (normalised), ``input_mean``, ``input_std``, ``target_mean``,
``target_std``, ``classes``, ``task``, ``metrics``, ``job_id``, ``step``, ``epoch`` and ``which``
(final / best). The same information is also written as a sidecar ``jobs/<id>/weights.json`` so the
API can answer ``/predict`` and list metadata without opening the weights file. Both files load with
``safetensors.torch.load_file`` into ``torch_model.load_state_dict``.

Progress (``epoch``, ``step``, ``total_steps``, ``samples_per_s``, ``eta_s``) is written to the record at
most once a second; the record also gets ``dataset`` (the dataset's description and the
standardisation statistics) when the data is loaded, and ``result`` (metrics, weight keys) at the end.
"""
from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import engine
from engine.utils.data import DataLoader

from .build import (build_loss, build_model, build_optimizer, build_scheduler, compute_loss, count_correct,
                    steps_per_epoch)
from .checkpoints import capture_state, latest_valid_checkpoint, restore_state, save_checkpoint
from .datasets import DataSettings, DatasetError, load_dataset
from .records import InvalidTransition, JobNotFound, Lease, LeaseLost, QuotaReached, Records, json_safe
from .settings import Settings
from .spec import SpecError, SpecLimits, validate_spec
from .store import Store, StoreError, validate_id

__all__ = ["run_job", "weights_key", "best_weights_key", "weights_meta_key", "LOST", "DEFERRED", "JobFailed"]

log = logging.getLogger(__name__)

LOST = "lost"
DEFERRED = "deferred"
PROGRESS_EVERY_S = 1.0
MAX_MESSAGE = 2000


def weights_key(job_id: str) -> str:
    return f"jobs/{validate_id(job_id, 'job id')}/weights.safetensors"


def best_weights_key(job_id: str) -> str:
    return f"jobs/{validate_id(job_id, 'job id')}/weights-best.safetensors"


def weights_meta_key(job_id: str) -> str:
    return f"jobs/{validate_id(job_id, 'job id')}/weights.json"


class JobFailed(Exception):
    """Ends the attempt as ``failed`` with ``code``; ``data`` goes into the ``failed`` event."""

    def __init__(self, code: str, message: str, **data):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class _Stop(Exception):
    """Internal: the attempt ends with this status (already recorded)."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


@dataclass
class _Best:
    loss: float = math.inf
    epoch: int | None = None
    step: int | None = None
    state: dict | None = None      # CPU copies of the model's state_dict
    metrics: dict = field(default_factory=dict)


def _cpu_copy(state_dict: dict) -> dict:
    return {k: engine.from_numpy(np.array(v.detach().cpu().numpy(), copy=True)) for k, v in state_dict.items()}


def run_job(job_id: str, *, settings: Settings, records: Records, store: Store, device: str = "cpu",
            worker: str | None = None, shutdown: threading.Event | None = None,
            loss_sync_every: int = 16, data_settings: DataSettings | None = None, resolve_upload=None,
            on_step: Callable[[dict], None] | None = None) -> str:
    """Run one attempt of ``job_id`` to its end and return its final status (see the module docstring):
    ``succeeded``, ``failed``, ``cancelled``, ``paused``, ``queued`` (handed back on ``shutdown``) or
    ``lost`` (also when the job no longer exists; a job that is not queued or running — cancelled or
    paused while queued, already finished — is not run and its status is returned). ``device`` is an
    engine device string ("cpu", "cuda:0"); the caller resolves ``auto``.
    ``worker`` names the worker in the ``started`` event. ``resolve_upload`` maps an uploaded dataset id
    to its path. ``on_step`` (tests, instrumentation) is called after each step's lease check with
    ``{"step", "epoch"}``; an exception it raises that is not an ``Exception`` (a ``BaseException``)
    propagates untouched, as a crash would. Exceptions the recording itself hits (Redis unreachable
    after the client's retries) propagate too: the job stays ``running`` for the cleanup to re-queue."""
    try:
        attempt = records.acquire_attempt(job_id, worker, max_running=settings.quota_running)
    except QuotaReached as e:
        log.info("job %s waits: %s", job_id, e)
        return DEFERRED
    except JobNotFound:
        log.warning("job %s: no such job (deleted?); nothing to run", job_id)
        return LOST
    except InvalidTransition as e:  # cancelled or paused while queued, or already finished
        log.info("job %s: %s", job_id, e)
        job = records.get_job(job_id)
        return job["status"] if job else LOST
    run = _Attempt(job_id, attempt, settings, records, store, device, shutdown, max(1, int(loss_sync_every)),
                   data_settings, resolve_upload, on_step)
    return run.run()


class _Attempt:
    def __init__(self, job_id, attempt, settings, records, store, device, shutdown, sync_every, data_settings,
                 resolve_upload, on_step):
        self.job_id, self.attempt, self.settings = job_id, attempt, settings
        self.records, self.store, self.device = records, store, device
        self.shutdown, self.sync_every, self.on_step = shutdown, sync_every, on_step
        self.data_settings, self.resolve_upload = data_settings, resolve_upload
        self.pending: list[tuple[int, int, object, float]] = []   # (step, epoch, loss tensor, lr)
        self.epoch_losses: list[float] = []
        self.phase: str | None = None
        self.last_progress = 0.0
        self.best = _Best()
        self.last_train: dict = {}
        self.last_val: dict = {}
        self.last_train_mean: float | None = None
        self.metrics = None

    # ---- the whole attempt -------------------------------------------------------------------------
    def run(self) -> str:
        try:
            return self._run()
        except (LeaseLost, _LostLease):
            log.info("job %s: attempt %s lost its lease; stopping without writing", self.job_id, self.attempt)
            return LOST
        except _Stop as s:
            return s.status
        except JobFailed as e:
            return self._fail(e.code, e.message, e.data)
        except StoreError as e:
            log.warning("job %s: storage error: %s", self.job_id, e)
            return self._fail("storage_error", str(e))
        except DatasetError as e:
            return self._fail("dataset_error", e.message)
        except SpecError as e:
            return self._fail("invalid_spec", e.message)
        except MemoryError as e:
            log.exception("job %s: out of memory", self.job_id)
            return self._fail("out_of_memory", f"out of memory: {e}" if str(e) else "out of memory")
        except Exception as e:  # noqa: BLE001 - any failure of the job ends it as failed, with its reason
            log.exception("job %s: attempt %s failed", self.job_id, self.attempt)
            text = str(e).strip()
            return self._fail("internal_error", f"{type(e).__name__}: {text}" if text else type(e).__name__)

    def _fail(self, code: str, message: str, data: dict | None = None) -> str:
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 3] + "..."
        try:
            if self.metrics is not None:
                self.metrics.flush()   # the curve up to the failure
            self.records.transition(self.job_id, "failed", attempt_id=self.attempt, error_code=code,
                                    error_message=message, data=data)
        except LeaseLost:
            return LOST
        log.info("job %s failed (%s): %s", self.job_id, code, message)
        return "failed"

    def _run(self) -> str:
        job = self.records.get_job(self.job_id)
        if job is None:
            raise _LostLease()
        self.tenant = job["tenant"]
        limits = SpecLimits.from_settings(self.settings)
        spec = validate_spec(job["spec"], limits)
        self.spec = spec
        tr = spec.training
        cap = float(self.settings.job_timeout_s)
        self.max_runtime = min(tr.max_runtime_s, cap) if tr.max_runtime_s else cap
        self.t0 = time.monotonic()
        self.runtime_before = 0.0

        # ---- data ----
        self._set_phase("loading_data")
        data = load_dataset(spec.data, seed=tr.seed, settings=self.data_settings, resolve_upload=self.resolve_upload)
        self.data = data
        self.records.update_job(self.job_id, attempt_id=self.attempt, dataset={
            "info": data.info.to_dict(), "input_mean": data.input_mean, "input_std": data.input_std,
            "target_mean": data.target_mean, "target_std": data.target_std})
        n_steps = steps_per_epoch(data.info.n_train, spec.data.batch_size, spec.data.drop_last)
        if n_steps < 1:
            raise JobFailed("invalid_spec", f"data.batch_size {spec.data.batch_size} with drop_last leaves no "
                            f"training step for {data.info.n_train} samples")
        self.total_steps = n_steps * tr.epochs

        # ---- model ----
        engine.manual_seed(tr.seed)
        model = build_model(spec, limits=limits).to(self.device)
        loss_fn = build_loss(spec).to(self.device)
        optimizer = build_optimizer(spec, model)
        scheduler = build_scheduler(spec, optimizer, n_steps)
        gen = engine.Generator().manual_seed(tr.seed)
        loader = DataLoader(data.train, batch_size=spec.data.batch_size, shuffle=spec.data.shuffle,
                            drop_last=spec.data.drop_last, generator=gen if spec.data.shuffle else None)
        self.model, self.loss_fn, self.optimizer, self.scheduler, self.loader = \
            model, loss_fn, optimizer, scheduler, loader
        step_interval = scheduler is not None and spec.scheduler.interval == "step"
        plateau = isinstance(scheduler, engine.optim.lr_scheduler.ReduceLROnPlateau)

        # ---- resume ----
        start_epoch, step = 0, 0
        ckpt = latest_valid_checkpoint(self.store, self.job_id, map_location=self.device)
        if ckpt is not None:
            restore_state(ckpt.state, model=model, optimizer=optimizer, scheduler=scheduler, loader=loader)
            start_epoch, step = int(ckpt.state["epoch"]), int(ckpt.state["step"])
            extra = ckpt.state.get("extra") or {}
            self.runtime_before = float(extra.get("runtime_s", 0.0))
            b = extra.get("best") or {}
            if b.get("state") is not None:
                self.best = _Best(float(b["loss"]), b.get("epoch"), b.get("step"), b["state"], b.get("metrics") or {})
            self.last_train = extra.get("last_train") or {}
            self.last_val = extra.get("last_validation") or {}
            log.info("job %s: attempt %s resumes from the checkpoint at step %s (epoch %s)", self.job_id,
                     self.attempt, step, start_epoch)
        self.records.trim_metrics_after(self.job_id, self.attempt, step)
        self.step, self.start_step, self.samples = step, step, 0

        clip = tr.grad_clip_norm
        every_steps, every_epochs = tr.checkpoint_every_steps, tr.checkpoint_every_epochs
        self.metrics = self.records.metrics_writer(self.job_id, self.attempt, self.settings.metrics_flush_every,
                                                   self.settings.metrics_flush_s)
        self._set_phase("training")
        self._progress(start_epoch, force=True)

        for epoch in range(start_epoch, tr.epochs):
            model.train()
            self._set_phase("training")
            n_batches = len(loader)
            batches = iter(loader)
            stop: str | None = None
            for k, (x, y) in enumerate(batches, start=loader.state_dict()["batches_yielded"]):
                x, y = x.to(self.device), y.to(self.device)
                loss = compute_loss(loss_fn, model(x), y)
                optimizer.zero_grad()
                loss.backward()
                if clip is not None:
                    engine.nn.utils.clip_grad_norm_(model.parameters(), clip)
                optimizer.step()
                lr = float(optimizer.param_groups[0]["lr"])
                if step_interval:  # (the spec refuses ReduceLROnPlateau per step)
                    scheduler.step()
                step += 1
                self.step = step
                self.samples += int(x.shape[0])
                self.pending.append((step, epoch, loss.detach(), lr))
                if len(self.pending) >= self.sync_every:
                    self._drain()
                self._progress(epoch)

                stop = self._control(stop)
                if self.on_step is not None:
                    self.on_step({"step": step, "epoch": epoch})
                last = k + 1 == n_batches
                if not last:
                    if stop is not None:
                        self._checkpoint(epoch)
                        self._finish_stop(stop)
                    if every_steps and step % every_steps == 0:
                        self._checkpoint(epoch)

            # ---- the epoch's end ----
            self._drain()
            train_mean = float(np.mean(self.epoch_losses)) if self.epoch_losses else math.nan
            self.epoch_losses, self.last_train_mean = [], train_mean
            val = self._validate(epoch) if data.val is not None else {}
            monitor = val.get("loss", train_mean)
            if scheduler is not None and not step_interval:
                scheduler.step(monitor) if plateau else scheduler.step()
            if monitor < self.best.loss:
                self.best = _Best(monitor, epoch, step, _cpu_copy(model.state_dict()),
                                  {"train_loss": train_mean, **{f"val_{k}": v for k, v in val.items()}})
            self.metrics.flush()
            self.records.add_event(self.job_id, "epoch_end", {
                "epoch": epoch, "step": step, "train_loss": train_mean,
                **{f"val_{k}": v for k, v in val.items()}}, attempt_id=self.attempt)
            # a step-interval checkpoint that fell on the epoch's last batch is taken here
            due = bool(every_epochs and (epoch + 1) % every_epochs == 0) or \
                bool(every_steps and step % every_steps == 0)
            stop = self._control(stop) if stop is None else stop
            if epoch + 1 == tr.epochs:
                stop = None  # the training is done: finishing is quicker than stopping (a cancel ended it above)
            if due or stop is not None:
                self._checkpoint(epoch + 1)
            if stop is not None:
                self._finish_stop(stop)
            self._progress(epoch + 1)

        return self._save_final(tr.epochs)

    # ---- per step ------------------------------------------------------------------------------
    def _control(self, stop: str | None) -> str | None:
        """The lease check of this step: LOST and CANCEL end the attempt here; PAUSE, a timeout and a
        shutdown become a stop that is carried out after the next checkpoint."""
        lease = self.records.check_lease(self.job_id, self.attempt)
        if lease is Lease.LOST:
            raise _LostLease()
        if lease is Lease.CANCEL:
            self._drain()
            self.metrics.flush()
            self.records.transition(self.job_id, "cancelled", attempt_id=self.attempt,
                                    data={"step": self.step, "attempt": self.attempt})
            raise _Stop("cancelled")
        if stop is not None:
            return stop
        if lease is Lease.PAUSE:
            return "pause"
        if self.shutdown is not None and self.shutdown.is_set():
            return "shutdown"
        if self._runtime() >= self.max_runtime:
            return "timeout"
        return None

    def _runtime(self) -> float:
        return self.runtime_before + (time.monotonic() - self.t0)

    def _drain(self) -> None:
        """Read the pending losses back in one transfer, fail on a non-finite one, log the records."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        values = engine.stack([p[2] for p in pending]).detach().cpu().numpy().astype(np.float64)
        for (step, epoch, _, lr), value in zip(pending, values):
            value = float(value)
            self.metrics.log_train(step, epoch, value, lr)
            self.last_train = {"step": step, "epoch": epoch, "loss": value, "lr": lr}
            if not math.isfinite(value):
                raise JobFailed("nan_loss", f"the training loss became {value} at step {step} (epoch {epoch}); "
                                "lower optimizer.lr, set training.grad_clip_norm, or check the data",
                                step=step, epoch=epoch)
            self.epoch_losses.append(value)

    def _progress(self, epoch: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        elapsed = max(now - self.t0, 1e-9)
        done = self.step - self.start_step
        rate = done / elapsed
        eta = (self.total_steps - self.step) / rate if rate > 0 else None
        self.records.update_job(self.job_id, attempt_id=self.attempt, progress={
            "epoch": min(epoch, self.spec.training.epochs - 1), "epochs": self.spec.training.epochs,
            "step": self.step, "total_steps": self.total_steps,
            "samples_per_s": round(self.samples / elapsed, 2), "eta_s": round(eta, 2) if eta is not None else None})

    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.records.update_job(self.job_id, attempt_id=self.attempt, phase=phase)
            self.phase = phase

    # ---- per epoch -----------------------------------------------------------------------------
    def _validate(self, epoch: int) -> dict:
        self._set_phase("evaluating")
        model, loss_fn = self.model, self.loss_fn
        model.eval()
        losses, weights, correct, total = [], [], 0, 0
        classifier = True
        loader = DataLoader(self.data.val, batch_size=max(self.spec.data.batch_size, 256), shuffle=False)
        with engine.no_grad():
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                out = model(x)
                losses.append(compute_loss(loss_fn, out, y))
                weights.append(int(x.shape[0]))
                counted = count_correct(out, y, loss_fn)
                if counted is None:
                    classifier = False
                else:
                    correct, total = correct + counted[0], total + counted[1]
        model.train()
        values = engine.stack(losses).cpu().numpy().astype(np.float64)
        val_loss = float(np.dot(values, weights) / sum(weights))
        accuracy = correct / total if classifier and total else None
        self.metrics.log_validation(epoch, self.step, val_loss, accuracy)
        self.last_val = {"epoch": epoch, "step": self.step, "loss": val_loss, "accuracy": accuracy}
        self._set_phase("training")
        out = {"loss": val_loss}
        if accuracy is not None:
            out["accuracy"] = accuracy
        return out

    # ---- checkpoints and stops -------------------------------------------------------------------
    def _fence(self) -> None:
        if self.records.check_lease(self.job_id, self.attempt) is Lease.LOST:
            raise _LostLease()

    def _checkpoint(self, epoch: int) -> None:
        """Checkpoint the state after ``self.step``; ``epoch`` is the epoch in progress (mid-epoch) or
        the next one (after an epoch's end work)."""
        self._drain()
        self.metrics.flush()   # the metrics up to the checkpoint are recorded before it exists
        b = self.best
        extra = {"runtime_s": self._runtime(), "last_train": self.last_train, "last_validation": self.last_val,
                 "best": {"loss": b.loss, "epoch": b.epoch, "step": b.step, "state": b.state,
                          "metrics": b.metrics} if b.state is not None else None}
        metrics = {k: v for k, v in (("train_loss", self.last_train.get("loss")),
                                     ("val_loss", self.last_val.get("loss")),
                                     ("val_accuracy", self.last_val.get("accuracy"))) if v is not None}
        state = capture_state(model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                              loader=self.loader, epoch=epoch, step=self.step, metrics=metrics, extra=extra)
        info = save_checkpoint(self.store, self.job_id, state, keep_last=self.settings.checkpoint_keep,
                               fence=self._fence)
        d = info.to_dict()
        self.records.record_checkpoint(self.job_id, self.attempt, d)
        self._count_bytes()

    def _count_bytes(self) -> None:
        """What the job keeps in the store now counts towards its tenant's storage quota."""
        self.records.set_job_bytes(self.tenant, self.job_id, self.store.prefix_bytes(f"jobs/{self.job_id}"))

    def _finish_stop(self, stop: str) -> None:
        """After the checkpoint: pause, time out or hand the job back."""
        if stop == "pause":
            self.records.transition(self.job_id, "paused", attempt_id=self.attempt, data={"step": self.step})
            raise _Stop("paused")
        if stop == "timeout":
            raise JobFailed("timeout", f"training.max_runtime_s ({self.max_runtime:g} s) reached at step "
                            f"{self.step}; the job was checkpointed there", step=self.step)
        status = self.records.interrupt(self.job_id, "worker shutdown", attempt_id=self.attempt,
                                        max_restarts=self.settings.max_restarts)
        raise _Stop(status)

    # ---- the end ---------------------------------------------------------------------------------
    def _save_final(self, epochs: int) -> str:
        self._drain()
        self.metrics.flush()
        self._set_phase("saving")
        spec, data = self.spec, self.data
        # the last epoch's mean training loss, as the best weights' metrics (and epoch_end events) have it
        final_metrics = {"train_loss": self.last_train_mean if self.last_train_mean is not None
                         else self.last_train.get("loss")}
        if self.last_val:
            final_metrics["val_loss"] = self.last_val.get("loss")
            if self.last_val.get("accuracy") is not None:
                final_metrics["val_accuracy"] = self.last_val["accuracy"]
        base = {"job_id": self.job_id, "spec": spec.normalized(), "task": data.info.task,
                "classes": data.info.classes, "input_shape": list(data.info.input_shape),
                "input_mean": data.input_mean, "input_std": data.input_std,
                "target_mean": data.target_mean, "target_std": data.target_std,
                "vocab": data.info.vocab}
        final_state = _cpu_copy(self.model.state_dict())
        best = self.best
        best_state = best.state if best.state is not None else final_state
        final_meta = {**base, "which": "final", "epoch": epochs - 1, "step": self.step, "metrics": final_metrics}
        best_meta = {**base, "which": "best", "epoch": best.epoch, "step": best.step, "metrics": best.metrics}
        self._fence()
        n_final = self.store.put_bytes(weights_key(self.job_id), weights_bytes(final_state, final_meta))
        n_best = self.store.put_bytes(best_weights_key(self.job_id), weights_bytes(best_state, best_meta))
        sidecar = {**base, "dataset": data.info.to_dict(),
                   "final": {k: final_meta[k] for k in ("epoch", "step", "metrics")},
                   "best": {k: best_meta[k] for k in ("epoch", "step", "metrics")},
                   "files": {"final": weights_key(self.job_id), "best": best_weights_key(self.job_id)}}
        self.store.put_bytes(weights_meta_key(self.job_id), json.dumps(json_safe(sidecar), indent=1).encode())
        result = {"metrics": final_metrics, "best": {"epoch": best.epoch, "step": best.step, "metrics": best.metrics},
                  "weights": {"final": weights_key(self.job_id), "final_bytes": n_final,
                              "best": best_weights_key(self.job_id), "best_bytes": n_best,
                              "meta": weights_meta_key(self.job_id)}}
        self.records.update_job(self.job_id, attempt_id=self.attempt, result=result)
        self._count_bytes()
        self._progress(epochs - 1, force=True)
        self.records.transition(self.job_id, "succeeded", attempt_id=self.attempt, data={"metrics": final_metrics})
        return "succeeded"


class _LostLease(Exception):
    pass


def weights_bytes(state_dict: dict, metadata: dict) -> bytes:
    """A state_dict as ``engine.save`` writes it, with ``metadata`` (values JSON-encoded) added to the
    safetensors header next to the engine's own keys."""
    import safetensors.numpy
    buf = io.BytesIO()
    engine.save(state_dict, buf)
    raw = buf.getvalue()
    n = int.from_bytes(raw[:8], "little")
    own = json.loads(raw[8:8 + n]).get("__metadata__") or {}
    arrays = safetensors.numpy.load(raw)
    extra = {k: json.dumps(json_safe(v), allow_nan=False) for k, v in metadata.items()}
    clash = set(extra) & set(own)
    if clash:
        raise ValueError(f"weights metadata keys {sorted(clash)} are the engine's own")
    return safetensors.numpy.save(arrays, metadata={**own, **extra})
