"""Predictions from a finished job's weights (``POST /v1/jobs/{id}/predict``).

A ``Predictor`` rebuilds the model from the spec in the job's weights sidecar (``jobs/<id>/weights.json``),
loads the final or best weights, and maps raw inputs through the stored preprocessing: exactly what a
PyTorch user does with the downloaded file and its metadata, so both give the same numbers.
"""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from threading import Lock

import numpy as np

import engine

from .build import build_model, probabilities
from .datasets import DatasetInfo, preprocess_inputs
from .spec import SpecError, validate_spec
from .store import Store
from .train import best_weights_key, weights_key, weights_meta_key

__all__ = ["Predictor", "PredictorCache", "WEIGHTS"]

WEIGHTS = ("final", "best")
MAX_BATCH = 4096


class Predictor:
    def __init__(self, store: Store, job_id: str, which: str = "final"):
        if which not in WEIGHTS:
            raise ValueError(f"which must be one of {WEIGHTS}, got {which!r}")
        self.meta = json.loads(store.read(weights_meta_key(job_id)))   # ArtifactNotFound until it succeeded
        spec = validate_spec(self.meta["spec"])
        self.loss_type = spec.loss.type
        d = self.meta["dataset"]
        self.info = DatasetInfo(**{**d, "input_shape": tuple(d["input_shape"]), "target_shape": tuple(d["target_shape"])})
        key = weights_key(job_id) if which == "final" else best_weights_key(job_id)
        state = engine.load(io.BytesIO(store.read(key)))
        rng = engine.get_rng_state()            # building initialises weights; keep the global RNG as it was
        try:
            self.model = build_model(spec)
        finally:
            engine.set_rng_state(rng)
        self.model.load_state_dict(state)
        self.model.eval()
        self.lock = Lock()                      # one forward at a time per model (modules are not reentrant)

    def predict(self, inputs) -> dict:
        """``{"outputs"}`` (the model's raw outputs), plus ``probabilities`` and ``classes`` for
        classifiers, and ``predictions`` (outputs mapped back to the target's scale) when the targets
        were standardised. SpecError (param ``inputs``) for inputs that do not fit."""
        x = preprocess_inputs(inputs, self.info, self.meta.get("input_mean"), self.meta.get("input_std"))
        if len(x) > MAX_BATCH:
            raise SpecError("limit_exceeded", f"inputs: at most {MAX_BATCH} samples per request, got {len(x)}",
                            "inputs")
        with self.lock, engine.no_grad():
            out = self.model(engine.from_numpy(x))
            probs = probabilities(out, self.loss_type)
        result = {"outputs": out.numpy().tolist()}
        if probs is not None:
            result["probabilities"] = probs.numpy().tolist()
            result["classes"] = self.meta.get("classes")
            top = probs.numpy().argmax(-1)
            classes = self.meta.get("classes")
            result["predicted"] = [classes[i] for i in top] if classes and top.ndim == 1 else top.tolist()
        if self.meta.get("target_std") is not None:
            y = out.numpy() * np.asarray(self.meta["target_std"]) + np.asarray(self.meta["target_mean"])
            result["predictions"] = y.tolist()
        return result


class PredictorCache:
    """The few most recently used predictors, by (job id, which)."""

    def __init__(self, store: Store, size: int = 8):
        self.store, self.size = store, size
        self.items: OrderedDict[tuple[str, str], Predictor] = OrderedDict()
        self.lock = Lock()

    def get(self, job_id: str, which: str = "final") -> Predictor:
        key = (job_id, which)
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        predictor = Predictor(self.store, job_id, which)
        with self.lock:
            self.items[key] = predictor
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return predictor

    def forget(self, job_id: str) -> None:
        with self.lock:
            for key in [k for k in self.items if k[0] == job_id]:
                del self.items[key]
