"""The job spec: pydantic v2 models of DESIGN.md's format, the vocabulary of layer/loss/optimizer/
scheduler types (a registry derived from engine.nn and engine.optim by introspection, behind an
allow-list), and ``parse_spec`` that turns JSON or YAML text into a validated :class:`JobSpec`.

Every problem a user can cause is a :class:`SpecError` with a machine-readable ``code``, a message that
says what to change, and ``param``: the dotted path of the offending field, e.g.
``model.layers[2].out_features``, ``model.nodes.fc1.inputs`` or ``data.batch_size``.

A layer, loss, optimizer or scheduler is written ``{type: Name, arg: value, ...}``: ``type`` is the
engine class name and the other keys are its constructor's keyword arguments (one vocabulary for the
library and the service). A few keys are Fita's own and never reach a constructor:

- ``inputs`` (graph nodes only): the names of the nodes (or ``input`` / ``positions``) it reads;
- ``causal`` (attention layers only): apply the square causal mask (each position sees itself and
  the positions before it);
- ``interval`` (scheduler only): ``epoch`` (default) or ``step``, when the scheduler is stepped.

This module validates names and types of arguments only; values a constructor refuses (an odd
``embed_dim`` for ``num_heads``, ...) and shapes are checked by the dry build (workers.build).
"""
from __future__ import annotations

import difflib
import inspect
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["SpecError", "SpecLimits", "JobSpec", "ModelSpec", "LayerSpec", "NodeSpec", "DataSpec", "LossSpec",
           "OptimizerSpec", "SchedulerSpec", "TrainingSpec", "ResourcesSpec", "parse_spec", "validate_spec",
           "registry", "registry_dump", "lookup", "ArgInfo", "RegistryEntry", "MERGE_TYPES", "CAUSAL_TYPES",
           "SOURCE_NAMES", "AUTO_ARGS"]


# ---- errors and limits -------------------------------------------------------------------------

class SpecError(Exception):
    """A problem with a job spec (or its dataset) that the user can fix.

    ``code``: machine-readable (``spec_too_large``, ``invalid_syntax``, ``unsupported_media_type``,
    ``missing_field``, ``unknown_field``, ``invalid_value``, ``limit_exceeded``, ``unknown_type``,
    ``invalid_argument``, ``invalid_graph``, ``shape_mismatch``, ``incompatible``, ``unknown_dataset``,
    ``invalid_dataset``); ``message``: for people; ``param``: dotted path of the field, or None.
    ``errors`` lists every problem found (the first is this one); ``http_status`` is the status the
    API should answer with (413 for a body over the size limit, 415 for a media type it cannot read,
    422 otherwise)."""

    _STATUS = {"spec_too_large": 413, "unsupported_media_type": 415}

    def __init__(self, code: str, message: str, param: str | None = None, *, errors: list[dict] | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param
        self.errors = errors if errors else [{"code": code, "message": message, "param": param}]

    @property
    def http_status(self) -> int:
        return self._STATUS.get(self.code, 422)

    def to_dict(self) -> dict:
        """The body of an error response: ``{"code", "message", "param"}``."""
        return {"code": self.code, "message": self.message, "param": self.param}

    def __repr__(self) -> str:
        return f"SpecError(code={self.code!r}, message={self.message!r}, param={self.param!r})"


@dataclass(frozen=True)
class SpecLimits:
    """What one job may ask for. Defaults are the service's; ``from_settings`` reads them from
    ``workers.settings.Settings`` (or anything with the same ``max_*`` attributes)."""

    max_spec_bytes: int = 1 << 20
    max_layers: int = 256
    max_parameters: int = 100_000_000
    max_epochs: int = 10_000
    max_batch_size: int = 65_536
    # Not user-facing settings: bounds that keep a dry build from allocating absurd arrays.
    max_int_argument: int = 1 << 20
    max_seq_len: int = 4096
    max_samples: int = 1_000_000

    @classmethod
    def from_settings(cls, settings: Any) -> "SpecLimits":
        d = cls()
        return cls(max_spec_bytes=getattr(settings, "max_body_bytes", d.max_spec_bytes),
                   max_layers=getattr(settings, "max_layers", d.max_layers),
                   max_parameters=getattr(settings, "max_parameters", d.max_parameters),
                   max_epochs=getattr(settings, "max_epochs", d.max_epochs),
                   max_batch_size=getattr(settings, "max_batch_size", d.max_batch_size))


DEFAULT_LIMITS = SpecLimits()


def _limits(info: ValidationInfo) -> SpecLimits:
    ctx = info.context or {}
    return ctx.get("limits") or DEFAULT_LIMITS


def _limit_error(what: str, value, limit, setting: str) -> PydanticCustomError:
    return PydanticCustomError("limit_exceeded", "{what} is {value}, over the limit of {limit} ({setting})",
                               {"what": what, "value": value, "limit": limit, "setting": setting})


# ---- the registry: engine classes a spec may name ---------------------------------------------

MERGE_TYPES = {"Add": (), "Mul": (), "Concat": (("dim", "int", -1),)}
MERGE_DOCS = {"Add": "Sum of its inputs (broadcasting).", "Mul": "Elementwise product of its inputs (broadcasting).",
              "Concat": "Its inputs concatenated along `dim`."}
"""Graph-only node types that combine their inputs (Fita's own; no parameters): Add and Mul
elementwise (with broadcasting) over two or more inputs, Concat along ``dim`` (default -1)."""

CAUSAL_TYPES = frozenset({"MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder",
                          "TransformerDecoderLayer", "TransformerDecoder", "Transformer"})
"""Layer types that take ``causal: true`` (a square causal mask on their (target) self-attention)."""

SOURCE_NAMES = ("input", "positions")
"""Values a graph node may read besides other nodes: ``input`` is the batch; ``positions`` is
``arange(L)`` (int64) where L is dimension 1 of the input (the sequence length of batch-first
sequences), for learned position embeddings: ``{type: Embedding, ..., inputs: [positions]}``."""

AUTO_ARGS = {"CosineAnnealingLR": ("T_max",), "OneCycleLR": ("total_steps",)}
"""Scheduler arguments that may be left out: the builder fills them from training.epochs (and the
steps per epoch when ``interval: step``)."""

_CONTAINERS = frozenset({"Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict",
                         "RNNBase", "RNNCellBase"})
_EXCLUDED_OPTIMIZERS = {"Optimizer": "the abstract base class",
                        "LBFGS": "it needs a closure that re-evaluates the whole batch; not offered by the service"}
_EXCLUDED_SCHEDULERS = {"LRScheduler": "the abstract base class",
                        "LambdaLR": "it takes a Python function", "MultiplicativeLR": "it takes a Python function",
                        "SequentialLR": "it takes other scheduler objects",
                        "ChainedScheduler": "it takes other scheduler objects"}
# Constructor arguments the service sets itself (or that cannot be written in JSON).
_HIDDEN_ARGS = {"layer": {"device", "dtype", "_weight", "_freeze"},
                "loss": {"size_average", "reduce"},
                "optimizer": {"params"},
                "scheduler": {"optimizer", "last_epoch", "scale_fn", "verbose"}}
_TENSOR_ARGS = {"weight", "pos_weight"}   # loss arguments given as lists of numbers
_RESERVED = {"type", "inputs", "causal", "interval"}


_MISSING = object()


@dataclass(frozen=True)
class ArgInfo:
    """One constructor argument: its name, annotation (as written in the engine, or None) and default
    (``ArgInfo.REQUIRED`` when there is none)."""

    name: str
    annotation: str | None
    default: Any
    REQUIRED = _MISSING

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def module_valued(self) -> bool:
        """Arguments that take a layer (TransformerEncoder's encoder_layer, norm, ...): written as a
        nested ``{type: ..., ...}`` mapping."""
        a = self.annotation or ""
        return "Module" in a or a.endswith("Layer") or "Layer |" in a

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "type": self.annotation, "required": self.required}
        if not self.required:
            d["default"] = _jsonable(self.default)
        return d


@dataclass(frozen=True)
class RegistryEntry:
    """A type a spec may name: ``kind`` is layer, merge, loss, optimizer or scheduler."""

    name: str
    kind: str
    cls: type | None
    args: tuple[ArgInfo, ...]
    doc: str = ""
    arg_names: frozenset = field(default=frozenset(), compare=False)

    def arg(self, name: str) -> ArgInfo | None:
        for a in self.args:
            if a.name == name:
                return a
        return None

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "doc": self.doc, "args": [a.to_dict() for a in self.args]}


def _jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if callable(value):
        return getattr(value, "__name__", repr(value))
    return repr(value)


def _entry(name: str, kind: str, cls: type) -> RegistryEntry:
    sig = inspect.signature(cls.__init__)
    args = []
    for p in list(sig.parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in _HIDDEN_ARGS[kind]:
            continue
        ann = None if p.annotation is p.empty else (p.annotation if isinstance(p.annotation, str)
                                                     else getattr(p.annotation, "__name__", str(p.annotation)))
        args.append(ArgInfo(p.name, ann, _MISSING if p.default is p.empty else p.default))
    clash = _RESERVED & {a.name for a in args}
    if clash:  # a future engine class whose argument would be shadowed by a reserved key
        raise RuntimeError(f"{name} has an argument named {sorted(clash)}, which the job spec reserves")
    own = cls.__dict__.get("__doc__") or ""          # never a base class's (Module's, Optimizer's) doc
    doc = inspect.cleandoc(own).split("\n\n")[0].replace("\n", " ")
    return RegistryEntry(name, kind, cls, tuple(args), doc, frozenset(a.name for a in args))


@lru_cache(maxsize=1)
def registry() -> dict[str, dict[str, RegistryEntry]]:
    """``{"layer": {...}, "merge": {...}, "loss": {...}, "optimizer": {...}, "scheduler": {...}}``, each
    a class name -> RegistryEntry, derived from engine.nn / engine.optim. The allow-list: layers are
    the nn.Module subclasses that engine.nn exports, less containers, abstract bases and losses;
    losses are engine.nn's loss list; optimizers and schedulers are their packages' ``__all__``, less
    those a JSON spec cannot express (see ``_EXCLUDED_*``)."""
    from engine import nn, optim
    from engine.nn.modules import loss as loss_mod
    from engine.optim import lr_scheduler

    losses = set(loss_mod.__all__)
    out: dict[str, dict[str, RegistryEntry]] = {"layer": {}, "merge": {}, "loss": {}, "optimizer": {},
                                                 "scheduler": {}}
    for name in sorted(dir(nn)):
        obj = getattr(nn, name)
        if not (inspect.isclass(obj) and issubclass(obj, nn.Module)) or name.startswith("_"):
            continue
        if name in losses:
            out["loss"][name] = _entry(name, "loss", obj)
        elif name not in _CONTAINERS:
            out["layer"][name] = _entry(name, "layer", obj)
    for name, args in MERGE_TYPES.items():
        infos = tuple(ArgInfo(a, ann, d) for a, ann, d in args)
        out["merge"][name] = RegistryEntry(name, "merge", None, infos, MERGE_DOCS[name],
                                           frozenset(a.name for a in infos))
    for name in optim.__all__:
        obj = getattr(optim, name)
        if inspect.isclass(obj) and name not in _EXCLUDED_OPTIMIZERS:
            out["optimizer"][name] = _entry(name, "optimizer", obj)
    for name in lr_scheduler.__all__:
        if name not in _EXCLUDED_SCHEDULERS:
            out["scheduler"][name] = _entry(name, "scheduler", getattr(lr_scheduler, name))
    return out


def registry_dump() -> dict[str, list[dict]]:
    """The vocabulary as JSON-able data for the docs and the API: per kind (layers, merges, losses,
    optimizers, schedulers) a list of ``{"name", "kind", "doc", "args": [{"name", "type", "required",
    "default"}]}``."""
    reg = registry()
    plural = {"layer": "layers", "merge": "merges", "loss": "losses", "optimizer": "optimizers",
              "scheduler": "schedulers"}
    return {plural[k]: [e.to_dict() for e in entries.values()] for k, entries in reg.items()}


_KIND_WORD = {"layer": "layer", "merge": "merge node", "loss": "loss", "optimizer": "optimizer",
              "scheduler": "scheduler"}


def lookup(kinds: str | Iterable[str], name: str, param: str) -> RegistryEntry:
    """The entry for ``name`` in one of ``kinds``, or SpecError(unknown_type) with suggestions."""
    kinds = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    reg = registry()
    for k in kinds:
        if name in reg[k]:
            return reg[k][name]
    word = _KIND_WORD[kinds[0]]
    reason = {**_EXCLUDED_OPTIMIZERS, **_EXCLUDED_SCHEDULERS}.get(name)
    if reason and kinds[0] in ("optimizer", "scheduler"):
        raise SpecError("unknown_type", f"{param}: {name} is not available as a {word}: {reason}", param)
    elsewhere = [k for k in reg if k not in kinds and name in reg[k]]
    if elsewhere:
        hint = f"{name} is a {_KIND_WORD[elsewhere[0]]}, not a {word}"
        if elsewhere[0] == "merge":
            hint += " (merge nodes combine inputs, so they exist only in a graph: model.nodes)"
        raise SpecError("unknown_type", f"{param}: {hint}", param)
    names = [n for k in kinds for n in reg[k]]
    close = difflib.get_close_matches(name, names, n=3) or \
        [n for n in names if n.lower() == str(name).lower()]
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; known {word} types: {', '.join(sorted(names))}"
    raise SpecError("unknown_type", f"{param}: unknown {word} type {name!r}{hint}", param)


# ---- argument checking -------------------------------------------------------------------------

def _alternatives(annotation: str | None) -> set[str] | None:
    """The simple types an annotation allows (int, float, bool, str, None), or None when it says
    something else (tuples, lists, unions with those, or no annotation): then any JSON value of
    numbers, strings, booleans and lists of them is passed on, and the constructor judges it."""
    if not annotation:
        return None
    parts = {p.strip() for p in annotation.split("|")}
    if parts <= {"int", "float", "bool", "str", "None"}:
        return parts
    return None


def _check_plain(value, param: str, limits: SpecLimits, depth: int = 0):
    """JSON-ish values only (no NaN/inf), integers bounded, lists nested at most 4 deep; lists stay
    lists in the spec."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > limits.max_int_argument:
            raise SpecError("limit_exceeded", f"{param}: {value} is larger than {limits.max_int_argument}, the "
                            "largest integer argument a layer may take", param)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SpecError("invalid_value", f"{param}: {value} is not a finite number", param)
        return value
    if isinstance(value, (list, tuple)):
        if depth >= 4:
            raise SpecError("invalid_value", f"{param}: lists nested too deeply", param)
        return [_check_plain(v, f"{param}[{i}]", limits, depth + 1) for i, v in enumerate(value)]
    raise SpecError("invalid_value", f"{param}: expected a number, string, boolean or list, got a "
                    f"{type(value).__name__}", param)


def _coerce(arg: ArgInfo, value, param: str, limits: SpecLimits):
    allowed = _alternatives(arg.annotation)
    if allowed is None:
        return _check_plain(value, param, limits)
    if value is None and "None" in allowed:
        return None
    if isinstance(value, bool):
        if "bool" in allowed:
            return value
    elif isinstance(value, int):
        if "int" in allowed:
            return _check_plain(value, param, limits)
        if "float" in allowed:
            return float(value)
    elif isinstance(value, float):
        if "float" in allowed:
            return _check_plain(value, param, limits)
        if "int" in allowed and value.is_integer():
            return _check_plain(int(value), param, limits)
    elif isinstance(value, str) and "str" in allowed:
        return value
    want = " or ".join({"int": "an integer", "float": "a number", "bool": "true/false", "str": "a string",
                        "None": "null"}[a] for a in ("int", "float", "bool", "str", "None") if a in allowed)
    raise SpecError("invalid_argument", f"{param}: expected {want}, got {json.dumps(value, default=str)}", param)


def check_arguments(entry: RegistryEntry, args: dict, param: str, limits: SpecLimits = DEFAULT_LIMITS,
                    *, allow_missing: Iterable[str] = ()) -> dict:
    """Binds ``args`` (the keys of ``{type: ..., **args}``) to ``entry``'s constructor: unknown and
    missing arguments, and values of the wrong simple type, are SpecErrors whose param names the
    argument. Returns the arguments with JSON-compatible coerced values (64.0 -> 64 for an int).
    Nested layer specs (module-valued arguments) are checked recursively and returned as dicts."""
    out = {}
    for key, value in args.items():
        p = f"{param}.{key}"
        arg = entry.arg(key)
        if arg is None:
            hidden = key in _HIDDEN_ARGS.get(entry.kind, ())
            close = difflib.get_close_matches(key, entry.arg_names, n=2)
            if hidden:
                why = "the service sets it" if key in ("device", "dtype", "params", "optimizer") else \
                    "it cannot be set in a job spec"
                msg = f"{p}: {entry.name} takes {key!r} but {why}"
            else:
                accepted = ", ".join(a.name for a in entry.args) or "none"
                msg = f"{p}: {entry.name} has no argument {key!r}" + \
                    (f"; did you mean {' or '.join(close)}?" if close else f" (its arguments: {accepted})")
                if key == "args":
                    msg += "; write the arguments next to `type`, not under `args`"
            raise SpecError("invalid_argument", msg, p)
        if arg.module_valued:
            if value is None and not arg.required:
                out[key] = None
                continue
            if not isinstance(value, dict) or "type" not in value:
                raise SpecError("invalid_argument", f"{p}: expected a layer, written as a mapping "
                                "{type: ..., <its arguments>}", p)
            out[key] = check_layer(value, p, limits, nested=True)
            continue
        if entry.kind == "loss" and key in _TENSOR_ARGS and value is not None:
            if not (isinstance(value, list) and value and all(isinstance(v, (int, float)) and
                                                              not isinstance(v, bool) for v in value)):
                raise SpecError("invalid_argument", f"{p}: expected a list of numbers (one per class)", p)
            out[key] = _check_plain(value, p, limits)
            continue
        out[key] = _coerce(arg, value, p, limits)
    missing = [a.name for a in entry.args if a.required and a.name not in args and a.name not in allow_missing]
    if missing:
        p = f"{param}.{missing[0]}"
        raise SpecError("invalid_argument", f"{param}: {entry.name} needs {', '.join(repr(m) for m in missing)}", p)
    return out


def check_layer(layer: dict, param: str, limits: SpecLimits = DEFAULT_LIMITS, *, nested: bool = False,
                graph: bool = False) -> dict:
    """Checks one ``{type, ...args}`` layer mapping (a Sequential layer, a graph node, or a layer
    nested in an argument) and returns it with coerced arguments."""
    t = layer.get("type")
    if not isinstance(t, str):
        raise SpecError("invalid_value" if "type" in layer else "missing_field",
                        f"{param}.type: every layer needs a `type` (an engine.nn class name)", f"{param}.type")
    entry = lookup(("layer", "merge") if graph else "layer", t, f"{param}.type")
    args = {k: v for k, v in layer.items() if k not in ("type", "inputs", "causal")}
    out: dict = {"type": t}
    if "causal" in layer:
        if t not in CAUSAL_TYPES:
            raise SpecError("invalid_argument", f"{param}.causal: only attention layers take `causal` "
                            f"({', '.join(sorted(CAUSAL_TYPES))}), not {t}", f"{param}.causal")
        if nested:
            raise SpecError("invalid_argument", f"{param}.causal: set `causal` on the outer layer", f"{param}.causal")
        if not isinstance(layer["causal"], bool):
            raise SpecError("invalid_argument", f"{param}.causal: expected true or false", f"{param}.causal")
    if "inputs" in layer and not graph:
        raise SpecError("invalid_argument", f"{param}.inputs: `inputs` belongs to graph nodes (model.nodes); "
                        "the layers of model.layers each read the previous one", f"{param}.inputs")
    out.update(check_arguments(entry, args, param, limits))
    if layer.get("causal"):
        out["causal"] = True
    return out


# ---- the pydantic models -----------------------------------------------------------------------

class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Open(BaseModel):
    """``{type: Name, **constructor arguments}``: the arguments are the model's extra fields."""
    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(min_length=1, max_length=100)

    @property
    def args(self) -> dict:
        """The constructor's keyword arguments (every key but ``type`` and Fita's own keys)."""
        return {k: v for k, v in (self.model_extra or {}).items() if k not in _RESERVED}


class LayerSpec(_Open):
    """One layer of ``model.layers``: ``{type: Linear, in_features: 64, out_features: 10}``."""

    causal: bool | None = None


class NodeSpec(LayerSpec):
    """One node of ``model.nodes``: a layer or merge node (Add, Mul, Concat) and the names it reads."""

    inputs: list[str] = Field(min_length=1, max_length=16)


_NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


class ModelSpec(_Closed):
    """``layers`` (a Sequential), or ``nodes`` (name -> node, in the order they are written) with
    ``output`` (the node whose value the model returns)."""

    layers: list[LayerSpec] | None = None
    nodes: dict[str, NodeSpec] | None = None
    output: str | None = None

    @model_validator(mode="after")
    def _one_form(self, info: ValidationInfo):
        if (self.layers is None) == (self.nodes is None):
            raise PydanticCustomError("invalid_value", "give either `layers` (a Sequential) or `nodes` with "
                                      "`output` (a graph), not {what}",
                                      {"what": "both" if self.layers is not None else "neither"})
        if self.layers is not None and self.output is not None:
            raise PydanticCustomError("invalid_value", "`output` belongs to a graph (model.nodes); a Sequential "
                                      "returns its last layer's output")
        if self.nodes is not None and self.output is None:
            raise PydanticCustomError("missing", "a graph needs `output`: the name of the node the model returns")
        n = len(self.layers if self.layers is not None else self.nodes)
        if n == 0:
            raise PydanticCustomError("invalid_value", "the model has no layers")
        limit = _limits(info).max_layers
        if n > limit:
            raise _limit_error("the number of layers" if self.layers is not None else "the number of nodes",
                               n, limit, "max_layers")
        return self


# data fields bounded by a SpecLimits setting
_DATA_LIMITS = {"batch_size": "max_batch_size", "seq_len": "max_seq_len", "n_samples": "max_samples"}


class DataSpec(_Closed):
    """Which dataset and how to feed it. Options that apply to some datasets only (layout, seq_len,
    n_samples, noise, n_features, n_classes, target, task) are refused for the others by the
    dataset loader (workers.datasets), with their param."""

    dataset: str = Field(min_length=1, max_length=200, description="a built-in dataset (digits, iris, ...), "
                         "`text:<corpus>` or `upload:<id>` (see Datasets below)")
    validation_split: float = Field(0.2, ge=0.0, lt=1.0, description="fraction held out for validation, "
                                    "chosen reproducibly from training.seed")
    batch_size: int = Field(32, ge=1, description="samples per optimizer step")
    shuffle: bool = Field(True, description="reshuffle the training data every epoch")
    standardize: bool | None = Field(None, description="standardise inputs with the training split's mean and "
                                     "std (stored with the weights); default: true for tabular and image data, "
                                     "false for sequences")
    standardize_target: bool = Field(False, description="regression only: standardise targets too "
                                     "(predictions map back)")
    drop_last: bool = Field(False, description="skip the last, smaller batch of an epoch")
    seq_len: int | None = Field(None, ge=1, description="`text:<name>` and sine_sequences: sequence "
                                "length (default 64 / 32)")
    layout: Literal["flat", "image"] | None = Field(None, description="digits: 64 features (flat) or 1x8x8 "
                                                    "images")
    n_samples: int | None = Field(None, ge=10, description="synthetic datasets: how many samples")
    noise: float | None = Field(None, ge=0.0, le=10.0, description="synthetic datasets: noise level")
    n_features: int | None = Field(None, ge=1, le=1000, description="regression: input features")
    n_classes: int | None = Field(None, ge=2, le=10, description="spirals: number of arms (classes)")
    target: str | None = Field(None, max_length=200, description="uploaded CSV: the target column (default: "
                               "the one given at upload, else the last)")
    task: Literal["classification", "regression"] | None = Field(None, description="uploaded data: override "
                                                                 "the inferred task")

    @field_validator(*_DATA_LIMITS)
    @classmethod
    def _within_limit(cls, v, info: ValidationInfo):
        setting = _DATA_LIMITS[info.field_name]
        limit = getattr(_limits(info), setting)
        if v is not None and v > limit:
            raise _limit_error(info.field_name, v, limit, setting)
        return v


class LossSpec(_Open):
    """``{type: CrossEntropyLoss, label_smoothing: 0.1}``: an engine.nn loss and its arguments."""


class OptimizerSpec(_Open):
    """``{type: AdamW, lr: 0.001}``: an engine.optim optimizer and its arguments (not ``params``)."""


class SchedulerSpec(_Open):
    """``{type: StepLR, step_size: 10, interval: epoch}``: an lr_scheduler class and its arguments;
    ``interval`` says whether the training loop steps it once per epoch (default) or per batch."""

    interval: Literal["epoch", "step"] = "epoch"


class TrainingSpec(_Closed):
    epochs: int = Field(10, ge=1, description="passes over the training data")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seeds the weights, the data order, the split and "
                      "dropout: the same spec trains to the same weights on the CPU")
    grad_clip_norm: float | None = Field(None, gt=0.0, description="clip the gradients' total norm to this "
                                         "(clip_grad_norm_)")
    checkpoint_every_epochs: int | None = Field(1, ge=1, description="checkpoint after every N epochs")
    checkpoint_every_steps: int | None = Field(None, ge=1, description="checkpoint after every N steps too")
    max_runtime_s: float | None = Field(None, gt=0.0, description="stop (checkpoint, fail with timeout) after "
                                        "this long; capped by the server's FITA_JOB_TIMEOUT_S")

    @field_validator("epochs")
    @classmethod
    def _epoch_limit(cls, v: int, info: ValidationInfo) -> int:
        limit = _limits(info).max_epochs
        if v > limit:
            raise _limit_error("epochs", v, limit, "max_epochs")
        return v


class ResourcesSpec(_Closed):
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="the queue: cpu, cuda (a GPU worker), or "
                                                   "auto (a GPU when a GPU worker is registered)")


class JobSpec(_Closed):
    """A whole job (DESIGN.md). Build with :func:`parse_spec` (text) or :func:`validate_spec` (a dict):
    both run the schema and the vocabulary checks; ``model_validate`` alone runs only the schema."""

    name: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$",
                             description="a label for people")
    model: ModelSpec = Field(description="`layers` (a Sequential) or `nodes` + `output` (a graph)")
    data: DataSpec = Field(description="the dataset and how to feed it")
    loss: LossSpec = Field(description="an engine.nn loss: `{type: CrossEntropyLoss, ...arguments}`")
    optimizer: OptimizerSpec = Field(description="an engine.optim optimizer: `{type: AdamW, lr: 0.001}`")
    scheduler: SchedulerSpec | None = Field(None, description="an lr_scheduler class, stepped per epoch or, "
                                            "with `interval: step`, per batch")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="epochs, seed, clipping, "
                                   "checkpoints, time limit")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="where it runs")

    def normalized(self) -> dict:
        """The spec as plain JSON-able data with every default filled in (what the job record stores)."""
        out = self.model_dump(mode="json")
        out["model"] = _dump_model(self.model)
        return out


def _dump_model(model: ModelSpec) -> dict:
    def one(layer: LayerSpec, graph: bool) -> dict:
        d = {"type": layer.type, **layer.args}
        if layer.causal:
            d["causal"] = True
        if graph:
            d["inputs"] = list(layer.inputs)
        return d
    if model.layers is not None:
        return {"layers": [one(l, False) for l in model.layers]}
    return {"nodes": {n: one(node, True) for n, node in model.nodes.items()}, "output": model.output}


# ---- parsing -----------------------------------------------------------------------------------

_JSON_TYPES = {"application/json", "text/json"}
_YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}


class _SafeLoader(yaml.SafeLoader):
    """safe_load without anchors/aliases (an alias bomb expands exponentially once validated) and with
    YAML 1.2's floats: ``1e-3`` is a number, not the string YAML 1.1 makes of it."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not supported in a job spec",
                                              event.start_mark)
        return super().compose_node(parent, index)


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                |[-+]?\.(?:inf|Inf|INF)
                |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def _media_type(content_type: str | None) -> str:
    if not content_type:
        return "application/json"
    return content_type.split(";", 1)[0].strip().lower()


def _load_text(text: str | bytes, content_type: str | None) -> Any:
    media = _media_type(content_type)
    if media not in _JSON_TYPES | _YAML_TYPES:
        raise SpecError("unsupported_media_type", f"cannot read a job spec of type {media!r}: send JSON "
                        "(application/json) or YAML (application/yaml)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError("invalid_syntax", f"the spec is not UTF-8 text (byte {e.start})") from None
    if media in _JSON_TYPES:
        def no_constant(name):
            raise ValueError(f"{name} is not valid JSON")
        try:
            return json.loads(text, parse_constant=no_constant)
        except json.JSONDecodeError as e:
            raise SpecError("invalid_syntax", f"malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}") \
                from None
        except (ValueError, RecursionError) as e:
            raise SpecError("invalid_syntax", f"malformed JSON: {e}") from None
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError("invalid_syntax", f"malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise SpecError("invalid_syntax", "malformed YAML: nested too deeply") from None


def _param(loc: tuple) -> str | None:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


_PYDANTIC_CODES = {"missing": "missing_field", "extra_forbidden": "unknown_field", "limit_exceeded": "limit_exceeded"}


def _from_validation_error(exc: ValidationError) -> SpecError:
    errors = []
    for err in exc.errors(include_url=False):
        param = _param(tuple(err["loc"]))
        code = _PYDANTIC_CODES.get(err["type"], "invalid_value")
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            parent, _, key = (param or "").rpartition(".")
            known = _known_fields(parent)
            close = difflib.get_close_matches(key, known, n=1)
            msg += f"; did you mean {close[0]!r}?" if close else (f" (known: {', '.join(known)})" if known else "")
        elif err["type"] not in ("missing", "limit_exceeded") and "input" in err and \
                isinstance(err["input"], (int, float, str, bool)) and len(str(err["input"])) < 80:
            msg += f" (got {json.dumps(err['input'])})"
        errors.append({"code": code, "message": f"{param}: {msg}" if param else msg, "param": param})
    first = errors[0]
    return SpecError(first["code"], first["message"], first["param"], errors=errors)


def _known_fields(parent: str) -> list[str]:
    model: type[BaseModel] | None = JobSpec
    for part in [p for p in re.split(r"\.|\[\d+\]", parent) if p] if parent else []:
        f = model.model_fields.get(part) if model else None
        ann = getattr(f, "annotation", None)
        model = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and
                      issubclass(a, BaseModel)), None) if ann is not None else None
    return list(model.model_fields) if model else []


def parse_spec(text: str | bytes, content_type: str | None = "application/json",
               limits: SpecLimits | None = None) -> JobSpec:
    """Parses and validates a job spec from JSON or YAML text (``content_type`` is the request's
    Content-Type; parameters such as charset are ignored; None means JSON). Raises SpecError."""
    limits = limits or DEFAULT_LIMITS
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > limits.max_spec_bytes:
        raise SpecError("spec_too_large", f"the spec is {size} bytes, over the limit of {limits.max_spec_bytes} "
                        "bytes (max_spec_bytes)")
    return validate_spec(_load_text(text, content_type), limits)


def validate_spec(data: Any, limits: SpecLimits | None = None) -> JobSpec:
    """Validates already-parsed data (a dict): the schema, then the vocabulary (types, argument names
    and simple types, graph structure). Raises SpecError."""
    limits = limits or DEFAULT_LIMITS
    if not isinstance(data, dict):
        raise SpecError("invalid_value", f"a job spec is a mapping (name, model, data, loss, optimizer, ...), got "
                        f"{'nothing' if data is None else type(data).__name__}")
    try:
        spec = JobSpec.model_validate(data, context={"limits": limits})
    except ValidationError as e:
        raise _from_validation_error(e) from None
    _check_vocabulary(spec, limits)
    return spec


def _replace_args(obj: _Open, checked: dict) -> None:
    extra = obj.__pydantic_extra__
    for k, v in checked.items():
        if k not in ("type", "causal") and k in extra:
            extra[k] = v


def _check_vocabulary(spec: JobSpec, limits: SpecLimits) -> None:
    model = spec.model
    if model.layers is not None:
        for i, layer in enumerate(model.layers):
            raw = {"type": layer.type, **(layer.model_extra or {})}
            if layer.causal is not None:
                raw["causal"] = layer.causal
            _replace_args(layer, check_layer(raw, f"model.layers[{i}]", limits))
    else:
        _check_graph(model, limits)
    _replace_args(spec.loss, check_arguments(lookup("loss", spec.loss.type, "loss.type"), spec.loss.args, "loss",
                                             limits))
    _replace_args(spec.optimizer, check_arguments(lookup("optimizer", spec.optimizer.type, "optimizer.type"),
                                                  spec.optimizer.args, "optimizer", limits))
    if spec.scheduler is not None:
        s = spec.scheduler
        entry = lookup("scheduler", s.type, "scheduler.type")
        _replace_args(s, check_arguments(entry, s.args, "scheduler", limits, allow_missing=AUTO_ARGS.get(s.type, ())))
        if s.type == "ReduceLROnPlateau" and s.interval != "epoch":
            raise SpecError("invalid_value", "scheduler.interval: ReduceLROnPlateau is stepped with the epoch's "
                            "validation loss, so its interval must be `epoch`", "scheduler.interval")
        if s.type == "OneCycleLR" and s.args.get("total_steps") is None and \
                (s.args.get("epochs") is None) != (s.args.get("steps_per_epoch") is None):
            raise SpecError("invalid_argument", "scheduler: OneCycleLR needs total_steps, or both epochs and "
                            "steps_per_epoch, or none of them (then they follow training.epochs)", "scheduler")
    t = spec.training
    if t.checkpoint_every_steps is not None and t.checkpoint_every_epochs is not None and \
            "checkpoint_every_epochs" not in t.model_fields_set:
        t.checkpoint_every_epochs = None   # checkpoint_every_steps alone replaces the per-epoch default


def _check_graph(model: ModelSpec, limits: SpecLimits) -> None:
    from engine import nn
    nodes = model.nodes
    for name, node in nodes.items():
        p = f"model.nodes.{name}"
        if name in SOURCE_NAMES:
            raise SpecError("invalid_graph", f"{p}: {name!r} is reserved for the model's input "
                            f"({' and '.join(SOURCE_NAMES)}); give the node another name", p)
        if not _NODE_NAME.match(name) or hasattr(nn.Module, name):
            raise SpecError("invalid_graph", f"{p}: node names are letters, digits and underscores, start with a "
                            "letter and are not a Module attribute (they become state_dict key prefixes)", p)
        raw = {"type": node.type, **(node.model_extra or {})}
        if node.causal is not None:
            raw["causal"] = node.causal
        _replace_args(node, check_layer(raw, p, limits, graph=True))
        for j, src in enumerate(node.inputs):
            if src not in nodes and src not in SOURCE_NAMES:
                close = difflib.get_close_matches(src, list(nodes) + list(SOURCE_NAMES), n=1)
                raise SpecError("invalid_graph", f"{p}.inputs[{j}]: no node named {src!r}"
                                + (f"; did you mean {close[0]!r}?" if close else ""), f"{p}.inputs[{j}]")
            if src == name:
                raise SpecError("invalid_graph", f"{p}.inputs[{j}]: a node cannot read itself", f"{p}.inputs[{j}]")
        if node.type in MERGE_TYPES and len(node.inputs) < 2:
            raise SpecError("invalid_graph", f"{p}.inputs: {node.type} combines two or more inputs, got "
                            f"{len(node.inputs)}", f"{p}.inputs")
    if model.output not in nodes:
        raise SpecError("invalid_graph", f"model.output: no node named {model.output!r}", "model.output")
    order = topological_order(model)
    needed = _ancestors(model)
    unused = [n for n in nodes if n not in needed]
    if unused:
        raise SpecError("invalid_graph", f"model.nodes.{unused[0]}: the node does not lead to the output "
                        f"{model.output!r}; remove it or use it", f"model.nodes.{unused[0]}")
    if "input" not in {s for n in order for s in nodes[n].inputs}:
        raise SpecError("invalid_graph", "model.nodes: no node reads `input`", "model.nodes")


def topological_order(model: ModelSpec) -> list[str]:
    """Node names in an order where each comes after its inputs (the written order when it already is);
    a cycle is a SpecError naming a node on it."""
    nodes = model.nodes
    state: dict[str, int] = {}
    order: list[str] = []
    for start in nodes:
        if state.get(start):
            continue
        stack = [(start, iter(nodes[start].inputs))]
        state[start] = 1
        while stack:
            name, it = stack[-1]
            nxt = next((s for s in it if s in nodes), None)
            if nxt is None:
                stack.pop()
                state[name] = 2
                order.append(name)
            elif state.get(nxt) == 1:
                cycle = [n for n, _ in stack][[n for n, _ in stack].index(nxt):] + [nxt]
                raise SpecError("invalid_graph", f"model.nodes.{nxt}.inputs: the graph has a cycle "
                                f"({' -> '.join(reversed(cycle))})", f"model.nodes.{nxt}.inputs")
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(nodes[nxt].inputs)))
    return order


def _ancestors(model: ModelSpec) -> set[str]:
    seen, todo = set(), [model.output]
    while todo:
        n = todo.pop()
        if n in seen or n not in model.nodes:
            continue
        seen.add(n)
        todo.extend(model.nodes[n].inputs)
    return seen
