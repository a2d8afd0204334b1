"""From a validated job spec to engine objects: the model, loss, optimizer and scheduler, and the dry
build that proves a spec fits its dataset before anything is queued.

Models. ``model.layers`` becomes a :class:`SpecSequential` (an ``nn.Sequential`` whose layers are
registered as "0", "1", ...); ``model.nodes`` becomes a :class:`GraphModel` whose node modules are
registered under their node names. Either way the state_dict keys are the ones PyTorch gives the
same modules registered the same way (``torch.nn.Sequential`` of the layers, or a module with one
attribute per node), so trained weights load into PyTorch unchanged.

Layers whose forward returns a tuple (RNN, LSTM, GRU, LSTMCell, MultiheadAttention) pass on their
first output: the container unwraps it, so no wrapper module sits between the layer and its
parameters (the state_dict keys stay ``0.weight_ih_l0``, not ``0.inner.weight_ih_l0``). A
MultiheadAttention reading one value attends over it (query = key = value), two values are
(query, key = value), three are (query, key, value); it is called with ``need_weights=False``.
With ``causal: true``, attention layers get the square causal mask (each position sees itself and
the positions before it); ``positions`` (graph only) is ``arange(L)`` for the input's dimension 1.
In PyTorch, the equivalent forward does the same: ``out, _ = lstm(x)``; ``attn(x, x, x,
need_weights=False, attn_mask=mask, is_causal=True)[0]``; ``pos(torch.arange(x.shape[1]))``.

Losses over sequences. A language model's output is (N, L, vocab) and its targets (N, L):
:func:`compute_loss` flattens both to (N*L, vocab) and (N*L,) for CrossEntropyLoss/NLLLoss (the mean
over all tokens, as PyTorch computes ``loss(out.flatten(0, 1), y.flatten())``). For BCE losses the
int64 class ids become floats shaped like the output.

The dry build runs one forward pass, the loss and a backward pass on a random batch of
``min(2, batch_size)`` samples of the dataset's shapes, and reports parameters, FLOPs and memory
per training step. These are estimates:

- FLOPs count multiply-adds as 2 in the layers that dominate (Linear, Bilinear, convolutions,
  RNN/LSTM/GRU and their cells, MultiheadAttention including its scores and weighted sum), measured
  by forward hooks on the dry batch and scaled to ``batch_size``; a training step is taken as 3x the
  forward pass (the backward pass costs about twice the forward). Activations, normalisation,
  pooling and the optimizer's update are not counted.
- Memory per step: parameters + gradients + optimizer state (per optimizer type: Adam keeps two
  tensors per parameter, SGD with momentum one, ...) + activations, the bytes of every leaf module's
  output in the dry forward scaled to ``batch_size`` (what autograd keeps alive is of that order).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

import engine
from engine import nn

from .spec import (JobSpec, ModelSpec, SpecError, SpecLimits, registry,
                   topological_order, validate_spec)

__all__ = ["Add", "Mul", "Concat", "SpecSequential", "GraphModel", "call_layer", "build_layer", "build_model",
           "build_loss", "build_optimizer", "build_scheduler", "steps_per_epoch", "compute_loss", "count_correct",
           "probabilities", "estimate_parameters", "dry_build", "DryBuildResult", "example_batch"]


# ---- merge nodes ---------------------------------------------------------------------------------

class Add(nn.Module):
    """Sum of its inputs (broadcasting)."""

    def forward(self, *inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class Mul(nn.Module):
    """Elementwise product of its inputs (broadcasting)."""

    def forward(self, *inputs):
        out = inputs[0]
        for x in inputs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    """Its inputs concatenated along ``dim``."""

    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = dim

    def forward(self, *inputs):
        return engine.cat(list(inputs), self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


_MERGES = {"Add": Add, "Mul": Mul, "Concat": Concat}


# ---- calling a layer ---------------------------------------------------------------------------

def _attention_batch_first(module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return module.batch_first
    if isinstance(module, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        return module.self_attn.batch_first
    if isinstance(module, (nn.TransformerEncoder, nn.TransformerDecoder)):
        return module.layers[0].self_attn.batch_first if len(module.layers) else False
    if isinstance(module, nn.Transformer):
        return bool(getattr(module, "batch_first", False))
    return False


def _causal_kwargs(module: nn.Module, inputs: list) -> dict:
    target = inputs[1] if isinstance(module, nn.Transformer) else inputs[0]
    batch_first = _attention_batch_first(module)
    length = target.shape[1] if (batch_first and target.ndim == 3) else target.shape[0]
    mask = nn.Transformer.generate_square_subsequent_mask(length, device=target.device, dtype=target.dtype)
    if isinstance(module, nn.MultiheadAttention):
        return {"attn_mask": mask, "is_causal": True}
    if isinstance(module, nn.TransformerEncoderLayer):
        return {"src_mask": mask, "is_causal": True}
    if isinstance(module, nn.TransformerEncoder):
        return {"mask": mask, "is_causal": True}
    return {"tgt_mask": mask, "tgt_is_causal": True}   # decoder layer, decoder, Transformer


def call_layer(module: nn.Module, inputs: list, causal: bool = False):
    """Calls one layer of a spec model on its input values and returns one tensor (the first output
    of a layer that returns a tuple)."""
    kwargs: dict = {}
    if isinstance(module, nn.MultiheadAttention):
        if len(inputs) == 1:
            inputs = [inputs[0]] * 3
        elif len(inputs) == 2:
            inputs = [inputs[0], inputs[1], inputs[1]]
        kwargs["need_weights"] = False
    if causal:
        kwargs.update(_causal_kwargs(module, inputs))
    out = module(*inputs, **kwargs)
    if isinstance(out, tuple):
        out = out[0]
    return out


class SpecSequential(nn.Sequential):
    """``nn.Sequential`` that passes on the first output of tuple-returning layers and applies
    ``causal`` masks; its state_dict is a Sequential's."""

    def __init__(self, layers: list[nn.Module], causal: list[bool] | None = None):
        super().__init__(*layers)
        self._causal = list(causal) if causal is not None else [False] * len(layers)

    def forward(self, input):
        x = input
        for mod, causal in zip(self._modules.values(), self._causal):
            x = call_layer(mod, [x], causal)
        return x


class GraphModel(nn.Module):
    """A graph of named nodes: ``nodes`` maps a name to (module, input names, causal), in an order
    where each node comes after its inputs; ``output`` names the node returned. The modules are
    registered under their node names (state_dict keys ``<node>.<param>``). Sources: ``input`` (the
    batch) and ``positions`` (``arange(input.shape[1])``, int64)."""

    def __init__(self, nodes: dict[str, tuple[nn.Module, list[str], bool]], output: str):
        super().__init__()
        for name, (module, _, _) in nodes.items():
            self.add_module(name, module)
        self._graph = [(name, list(inputs), causal) for name, (_, inputs, causal) in nodes.items()]
        self._output = output
        # after its last reader runs a value is dropped, so activations do not outlive their use
        last: dict[str, int] = {}
        for i, (_, inputs, _) in enumerate(self._graph):
            for src in inputs:
                last[src] = i
        self._free_after = [[s for s in set(inputs) if last[s] == i and s != output]
                            for i, (_, inputs, _) in enumerate(self._graph)]

    def forward(self, input):
        values: dict[str, Any] = {"input": input}
        for i, (name, inputs, causal) in enumerate(self._graph):
            args = []
            for src in inputs:
                if src == "positions" and "positions" not in values:
                    values["positions"] = engine.arange(input.shape[1], device=input.device)
                args.append(values[src])
            values[name] = call_layer(self._modules[name], args, causal)
            for src in self._free_after[i]:
                values.pop(src, None)
        return values[self._output]

    def extra_repr(self) -> str:
        return f"output={self._output}"


# ---- building ----------------------------------------------------------------------------------

def _to_python(value):
    """JSON lists become tuples (kernel_size, betas, normalized_shape...)."""
    if isinstance(value, list):
        return tuple(_to_python(v) for v in value)
    return value


def _arg_in_message(message: str, kwargs: dict) -> str | None:
    """The argument an engine error is about: one whose name the message mentions, else the only one
    whose value it quotes."""
    for name in sorted(kwargs, key=len, reverse=True):
        if re.search(rf"\b{re.escape(name)}\b", message):
            return name
    quoted = [k for k, v in kwargs.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
              and re.search(rf"(?<![\w.]){re.escape(str(v))}(?![\w.])", message)]
    return quoted[0] if len(quoted) == 1 else None


def _construct(cls: type, kwargs: dict, param: str, what: str, extra: list | None = None):
    """Calls a constructor; anything it raises becomes SpecError(invalid_argument) naming ``param``
    (and the argument when the engine's message names one). Warnings are collected in ``extra``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            obj = cls(**kwargs)
        except SpecError:
            raise
        except Exception as e:  # noqa: BLE001 - every constructor error is the spec's
            arg = _arg_in_message(str(e), kwargs)
            p = f"{param}.{arg}" if arg else param
            raise SpecError("invalid_argument", f"{param} ({what}): {e}", p) from None
    if extra is not None:
        extra.extend(f"{param} ({what}): {w.message}" for w in caught)
    return obj


def build_layer(layer: dict, param: str, warnings_out: list | None = None) -> nn.Module:
    """One layer (or merge node) from its checked ``{type, ...}`` mapping (as in a validated spec)."""
    t = layer["type"]
    if t in _MERGES:
        kwargs = {k: v for k, v in layer.items() if k not in ("type", "inputs", "causal")}
        return _construct(_MERGES[t], kwargs, param, t, warnings_out)
    entry = registry()["layer"][t]
    kwargs = {}
    for k, v in layer.items():
        if k in ("type", "inputs", "causal"):
            continue
        arg = entry.arg(k)
        if arg is not None and arg.module_valued and isinstance(v, dict):
            kwargs[k] = build_layer(v, f"{param}.{k}", warnings_out)
        else:
            kwargs[k] = _to_python(v)
    return _construct(entry.cls, kwargs, param, t, warnings_out)


def _layer_dict(layer) -> dict:
    d = {"type": layer.type, **layer.args}
    if layer.causal:
        d["causal"] = True
    return d


def _model_spec(spec) -> ModelSpec:
    return spec.model if isinstance(spec, JobSpec) else spec


def layer_paths(spec: JobSpec | ModelSpec) -> list[tuple[str, str, dict]]:
    """(param path, registered name, layer mapping) per layer/node, in registration order."""
    model = _model_spec(spec)
    if model.layers is not None:
        return [(f"model.layers[{i}]", str(i), _layer_dict(l)) for i, l in enumerate(model.layers)]
    order = topological_order(model)
    return [(f"model.nodes.{n}", n, _layer_dict(model.nodes[n])) for n in order]


def build_model(spec: JobSpec | ModelSpec, *, limits: SpecLimits | None = None,
                warnings_out: list | None = None) -> nn.Module:
    """The model on the CPU (move it with ``.to(device)``), initialised from the engine's global RNG
    (seed it first with ``engine.manual_seed(spec.training.seed)`` for reproducible weights). The
    parameter count is checked against ``limits`` before anything is allocated."""
    limits = limits or SpecLimits()
    model = _model_spec(spec)
    estimate = estimate_parameters(model)
    if estimate > limits.max_parameters:
        raise SpecError("limit_exceeded", f"model: about {estimate:,} parameters, over the limit of "
                        f"{limits.max_parameters:,} (max_parameters)", "model")
    paths = layer_paths(model)
    modules = [build_layer(d, p, warnings_out) for p, _, d in paths]
    if model.layers is not None:
        net = SpecSequential(modules, [bool(d.get("causal")) for _, _, d in paths])
    else:
        net = GraphModel({name: (m, list(model.nodes[name].inputs), bool(d.get("causal")))
                          for (_, name, d), m in zip(paths, modules)}, model.output)
    count = sum(p.numel() for p in net.parameters())
    if count > limits.max_parameters:
        raise SpecError("limit_exceeded", f"model: {count:,} parameters, over the limit of "
                        f"{limits.max_parameters:,} (max_parameters)", "model")
    return net


def build_loss(spec: JobSpec) -> nn.Module:
    """The loss module; ``weight``/``pos_weight`` lists become float32 tensors (buffers)."""
    entry = registry()["loss"][spec.loss.type]
    kwargs = {}
    for k, v in spec.loss.args.items():
        kwargs[k] = engine.tensor(v, dtype=engine.float32) if k in ("weight", "pos_weight") and v is not None \
            else _to_python(v)
    return _construct(entry.cls, kwargs, "loss", spec.loss.type)


def build_optimizer(spec: JobSpec, params) -> Any:
    """The optimizer over ``params`` (a model, or an iterable of parameters)."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    entry = registry()["optimizer"][spec.optimizer.type]
    kwargs = {k: _to_python(v) for k, v in spec.optimizer.args.items()}
    return _construct(lambda **kw: entry.cls(params, **kw), kwargs, "optimizer", spec.optimizer.type)


def steps_per_epoch(n_train: int, batch_size: int, drop_last: bool = False) -> int:
    return n_train // batch_size if drop_last else math.ceil(n_train / batch_size)


def scheduler_args(spec: JobSpec, n_steps_per_epoch: int) -> dict:
    """The scheduler's arguments with the ones left out filled in (AUTO_ARGS): CosineAnnealingLR's
    T_max and OneCycleLR's total_steps become the number of times the scheduler will be stepped
    (epochs, or epochs x steps per epoch with ``interval: step``)."""
    s = spec.scheduler
    args = dict(s.args)
    stepped = spec.training.epochs * (n_steps_per_epoch if s.interval == "step" else 1)
    if s.type == "CosineAnnealingLR" and args.get("T_max") is None:
        args["T_max"] = stepped
    if s.type == "OneCycleLR" and args.get("total_steps") is None and args.get("epochs") is None:
        args["total_steps"] = stepped
    return args


def build_scheduler(spec: JobSpec, optimizer, n_steps_per_epoch: int):
    """The scheduler (None without one). The training loop steps it per ``spec.scheduler.interval``;
    ReduceLROnPlateau takes the epoch's validation loss (``scheduler.step(val_loss)``)."""
    if spec.scheduler is None:
        return None
    entry = registry()["scheduler"][spec.scheduler.type]
    kwargs = {k: _to_python(v) for k, v in scheduler_args(spec, n_steps_per_epoch).items()}
    return _construct(lambda **kw: entry.cls(optimizer, **kw), kwargs, "scheduler", spec.scheduler.type)


# ---- losses, accuracy, probabilities -------------------------------------------------------------

def _is_class_loss(loss_fn) -> bool:
    return isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss))


def _is_binary_loss(loss_fn) -> bool:
    return isinstance(loss_fn, (nn.BCEWithLogitsLoss, nn.BCELoss))


def compute_loss(loss_fn: nn.Module, output, target):
    """The loss of one batch, with Fita's conventions for sequence outputs (N, L, C) with targets
    (N, L) (flattened) and for BCE losses (targets cast to the output's dtype and shape)."""
    if _is_class_loss(loss_fn) and output.ndim == target.ndim + 1 and output.ndim > 2:
        output = output.reshape(-1, output.shape[-1])
        target = target.reshape(-1)
    elif _is_binary_loss(loss_fn):
        target = target.to(output.dtype).reshape(output.shape)
    return loss_fn(output, target)


def count_correct(output, target, loss_fn: nn.Module) -> tuple[int, int] | None:
    """(correct, total) predictions of a classifier's batch (per token for a language model); None
    for a regression loss. Class = argmax of the last dimension; for BCE losses output > 0 (logits)
    or > 0.5 (probabilities)."""
    if _is_class_loss(loss_fn):
        pred = output.argmax(-1)
    elif isinstance(loss_fn, nn.BCEWithLogitsLoss):
        pred = (output > 0).reshape(target.shape)
    elif isinstance(loss_fn, nn.BCELoss):
        pred = (output > 0.5).reshape(target.shape)
    else:
        return None
    correct = (pred.to(engine.int64) == target.to(engine.int64)).sum().item()
    return int(correct), int(target.numel())


def probabilities(output, loss_type: str):
    """Class probabilities from raw outputs, per loss type: softmax for CrossEntropyLoss, exp for
    NLLLoss (log-probabilities), sigmoid for BCEWithLogitsLoss (probability of class 1, shaped (N, 2)
    as [1 - p, p]), as is for BCELoss; None for regression losses."""
    if loss_type == "CrossEntropyLoss":
        return output.softmax(-1)
    if loss_type == "NLLLoss":
        return output.exp()
    if loss_type in ("BCEWithLogitsLoss", "BCELoss"):
        p = output.sigmoid() if loss_type == "BCEWithLogitsLoss" else output
        p = p.reshape(p.shape[0], -1)[:, :1]
        return engine.cat([1 - p, p], -1)
    return None


# ---- parameter estimate (before allocating anything) ---------------------------------------------

def _prod(v) -> int:
    if isinstance(v, (list, tuple)):
        return math.prod(int(x) for x in v)
    return int(v)


def _kernel(v, nd: int) -> int:
    return int(v) ** nd if not isinstance(v, (list, tuple)) else _prod(v)


def _full_args(layer: dict) -> dict:
    entry = registry()["layer"].get(layer["type"])
    out = {a.name: a.default for a in entry.args if not a.required} if entry else {}
    out.update({k: v for k, v in layer.items() if k not in ("type", "inputs", "causal")})
    return out


def _mha(e: int, bias: bool, kdim=None, vdim=None, add_bias_kv=False) -> int:
    kdim, vdim = kdim or e, vdim or e
    n = 3 * e * e if (kdim == e and vdim == e) else e * e + e * kdim + e * vdim
    return n + (3 * e + e if bias else 0) + e * e + (2 * e if add_bias_kv else 0)


def _layer_params(layer: dict | None) -> int:
    if not layer:
        return 0
    t, a = layer.get("type"), _full_args(layer)
    b = bool(a.get("bias", True))
    try:
        if t == "Linear":
            return a["in_features"] * a["out_features"] + b * a["out_features"]
        if t == "Bilinear":
            return a["in1_features"] * a["in2_features"] * a["out_features"] + b * a["out_features"]
        if t in ("Conv1d", "Conv2d"):
            nd = int(t[-2])
            return a["out_channels"] * (a["in_channels"] // a["groups"]) * _kernel(a["kernel_size"], nd) + \
                b * a["out_channels"]
        if t in ("ConvTranspose1d", "ConvTranspose2d"):
            nd = int(t[-2])
            return a["in_channels"] * (a["out_channels"] // a["groups"]) * _kernel(a["kernel_size"], nd) + \
                b * a["out_channels"]
        if t == "Embedding":
            return a["num_embeddings"] * a["embedding_dim"]
        if t in ("BatchNorm1d", "BatchNorm2d"):
            return (1 + b) * a["num_features"] if a.get("affine", True) else 0
        if t == "GroupNorm":
            return (1 + b) * a["num_channels"] if a.get("affine", True) else 0
        if t == "LayerNorm":
            return (1 + b) * _prod(a["normalized_shape"]) if a.get("elementwise_affine", True) else 0
        if t in ("RNN", "LSTM", "GRU"):
            g = {"RNN": 1, "LSTM": 4, "GRU": 3}[t]
            h, d, p = a["hidden_size"], 2 if a.get("bidirectional") else 1, a.get("proj_size", 0) or 0
            real = p or h
            n = 0
            for k in range(a.get("num_layers", 1)):
                inp = a["input_size"] if k == 0 else real * d
                n += d * (g * h * inp + g * h * real + b * 2 * g * h + (p * h if p else 0))
            return n
        if t in ("RNNCell", "LSTMCell", "GRUCell"):
            g = {"RNNCell": 1, "LSTMCell": 4, "GRUCell": 3}[t]
            h = a["hidden_size"]
            return g * h * (a["input_size"] + h) + b * 2 * g * h
        if t == "MultiheadAttention":
            return _mha(a["embed_dim"], b, a.get("kdim"), a.get("vdim"), a.get("add_bias_kv", False))
        if t in ("TransformerEncoderLayer", "TransformerDecoderLayer"):
            d, ff = a["d_model"], a.get("dim_feedforward", 2048)
            attn = 2 if t == "TransformerDecoderLayer" else 1
            norms = 3 if t == "TransformerDecoderLayer" else 2
            return attn * _mha(d, b) + d * ff + b * ff + ff * d + b * d + norms * (1 + b) * d
        if t in ("TransformerEncoder", "TransformerDecoder"):
            inner = a.get("encoder_layer") or a.get("decoder_layer")
            return a["num_layers"] * _layer_params(inner) + _layer_params(a.get("norm"))
        if t == "Transformer":
            d = a.get("d_model", 512)
            enc = _layer_params(a.get("custom_encoder")) if a.get("custom_encoder") else \
                a.get("num_encoder_layers", 6) * _layer_params(
                    {"type": "TransformerEncoderLayer", "d_model": d, "nhead": a.get("nhead", 8),
                     "dim_feedforward": a.get("dim_feedforward", 2048), "bias": b}) + (1 + b) * d
            dec = _layer_params(a.get("custom_decoder")) if a.get("custom_decoder") else \
                a.get("num_decoder_layers", 6) * _layer_params(
                    {"type": "TransformerDecoderLayer", "d_model": d, "nhead": a.get("nhead", 8),
                     "dim_feedforward": a.get("dim_feedforward", 2048), "bias": b}) + (1 + b) * d
            return enc + dec
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return 0   # the constructor will say what is wrong
    return 0


def estimate_parameters(spec: JobSpec | ModelSpec) -> int:
    """The model's parameter count computed from the spec alone (nothing allocated), for the layers
    that have parameters; used to refuse a model over the limit before building it."""
    return sum(_layer_params(d) for _, _, d in layer_paths(_model_spec(spec)))


# ---- the dry build -------------------------------------------------------------------------------

@dataclass
class DryBuildResult:
    """What ``POST /v1/jobs/validate`` returns (``to_dict``)."""

    spec: dict
    parameters: int
    trainable_parameters: int
    flops_per_step: int
    forward_flops_per_sample: int
    memory: dict
    output_shape: list
    steps_per_epoch: int
    total_steps: int
    dataset: dict
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


_OPTIMIZER_STATE = {"Adam": 2, "AdamW": 2, "Adamax": 2, "NAdam": 2, "RAdam": 2, "Adagrad": 1}


def optimizer_state_factor(spec: JobSpec) -> int:
    """Tensors of a parameter's size the optimizer keeps per parameter."""
    t, a = spec.optimizer.type, spec.optimizer.args
    if t == "SGD":
        return 1 if a.get("momentum", 0) else 0
    if t == "RMSprop":
        return 1 + (1 if a.get("momentum", 0) else 0) + (1 if a.get("centered", False) else 0)
    return _OPTIMIZER_STATE.get(t, 2) + (1 if t in ("Adam", "AdamW") and a.get("amsgrad") else 0)


def example_batch(info, n: int, seed: int = 0):
    """A random (inputs, targets) batch of ``n`` samples with the dataset's shapes and dtypes."""
    rng = np.random.default_rng(seed)
    if info.input_dtype == "int64":
        x = rng.integers(0, info.vocab_size or info.n_classes or 2, (n, *info.input_shape))
    else:
        x = rng.standard_normal((n, *info.input_shape)).astype(np.float32)
    if info.task == "regression":
        y = rng.standard_normal((n, *info.target_shape)).astype(np.float32)
    else:
        y = rng.integers(0, info.n_classes, (n, *info.target_shape))
    return engine.from_numpy(np.ascontiguousarray(x)), engine.from_numpy(np.ascontiguousarray(y))


_REGRESSION_LOSSES = {"MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"}
_CLASS_LOSSES = {"CrossEntropyLoss", "NLLLoss"}
_BINARY_LOSSES = {"BCEWithLogitsLoss", "BCELoss"}


def _check_loss_fits_task(spec: JobSpec, info) -> None:
    t = spec.loss.type
    if info.task == "regression":
        ok, fix = t in _REGRESSION_LOSSES, "MSELoss, L1Loss, SmoothL1Loss or HuberLoss"
    elif info.task == "language_model":
        ok, fix = t in _CLASS_LOSSES, "CrossEntropyLoss (or NLLLoss after LogSoftmax)"
    else:
        ok = t in _CLASS_LOSSES or (t in _BINARY_LOSSES and info.n_classes == 2)
        fix = "CrossEntropyLoss" + (" or BCEWithLogitsLoss" if info.n_classes == 2 else "")
    if not ok:
        raise SpecError("incompatible", f"loss.type: {t} does not fit {info.name}, a {info.task.replace('_', ' ')} "
                        f"dataset; use {fix}", "loss.type")
    weight = spec.loss.args.get("weight")
    if t in _CLASS_LOSSES and weight is not None and len(weight) != info.n_classes:
        raise SpecError("invalid_argument", f"loss.weight: {len(weight)} weights for {info.n_classes} classes",
                        "loss.weight")


def _shape(t) -> list:
    return list(t.shape)


def _check_output(out, y, info, spec: JobSpec, out_param: str, n: int) -> None:
    t = spec.loss.type
    got = _shape(out)
    per = got[1:]
    if t in _CLASS_LOSSES:
        want = [n, *info.target_shape, info.n_classes]
        if got != want:
            what = "vocabulary size" if info.task == "language_model" else "number of classes"
            raise SpecError("shape_mismatch", f"{out_param}: the model's output has shape {per} per sample; "
                            f"{t} on {info.name} needs {want[1:]} (the last dimension is the {what}, "
                            f"{info.n_classes})", out_param)
    elif t in _BINARY_LOSSES:
        if math.prod(per) != 1:
            raise SpecError("shape_mismatch", f"{out_param}: the model's output has shape {per} per sample; {t} "
                            "needs one value per sample ([1]): the logit of class 1", out_param)
    elif got != _shape(y):
        raise SpecError("shape_mismatch", f"{out_param}: the model's output has shape {per} per sample but the "
                        f"targets of {info.name} have shape {_shape(y)[1:]}", out_param)


def _bytes(obj) -> int:
    if isinstance(obj, engine.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(_bytes(o) for o in obj)
    return 0


def _weights_numel(module: nn.Module) -> int:
    return sum(p.numel() for name, p in module.named_parameters() if "weight" in name.rsplit(".", 1)[-1])


def _flops(module: nn.Module, args: tuple, out) -> int:
    """Forward FLOPs of one call (multiply-add = 2) for the layers that dominate; 0 for others."""
    first = out[0] if isinstance(out, tuple) else out
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * first.numel()
    if isinstance(module, nn.Bilinear):
        return 2 * module.in1_features * module.in2_features * first.numel()
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return 2 * (module.in_channels // module.groups) * math.prod(module.kernel_size) * first.numel()
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        return 2 * (module.out_channels // module.groups) * math.prod(module.kernel_size) * args[0].numel()
    if isinstance(module, nn.RNNBase):
        x = args[0]
        steps_x_batch = x.shape[0] * x.shape[1] if x.ndim == 3 else x.shape[0]
        return 2 * _weights_numel(module) * steps_x_batch
    if isinstance(module, nn.RNNCellBase):
        return 2 * _weights_numel(module) * (args[0].shape[0] if args[0].ndim == 2 else 1)
    if isinstance(module, nn.MultiheadAttention):
        q, k = args[0], args[1]
        e, bf = module.embed_dim, module.batch_first
        seq = (lambda t: t.shape[1]) if (bf and q.ndim == 3) else (lambda t: t.shape[0])
        batch = (q.shape[0] if bf else q.shape[1]) if q.ndim == 3 else 1
        lq, lk = seq(q), seq(k)
        proj = 2 * e * (e * lq + module.kdim * lk + module.vdim * lk)
        attention = 2 * 2 * lq * lk * e
        return batch * (proj + attention + 2 * e * e * lq)
    return 0


_COUNTED = (nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.RNNBase,
            nn.RNNCellBase, nn.MultiheadAttention)
_OPAQUE = (nn.RNNBase, nn.MultiheadAttention)   # counted whole; their children are not called


def _instrument(model: nn.Module, top: list[tuple[str, str, nn.Module]]):
    """Hooks for the dry forward: which top-level layer is running (for errors), FLOPs, activations."""
    state = {"flops": 0, "activations": 0, "current": None, "done": []}
    handles = []

    def walk(m: nn.Module, inside_opaque: bool):
        counted = isinstance(m, _COUNTED) and not inside_opaque
        leaf = not any(True for _ in m.children()) or isinstance(m, _OPAQUE)
        if counted or (leaf and not inside_opaque):
            def hook(mod, args, out, counted=counted, leaf=leaf):
                if counted:
                    state["flops"] += _flops(mod, args, out)
                if leaf:
                    state["activations"] += _bytes(out)
            handles.append(m.register_forward_hook(hook))
        for c in m.children():
            walk(c, inside_opaque or isinstance(m, _OPAQUE))

    walk(model, False)
    for path, name, mod in top:
        def pre(m, args, path=path):
            state["current"] = (path, m, [list(a.shape) for a in args if isinstance(a, engine.Tensor)])

        def post(m, args, out, path=path):
            state["done"].append((path, type(m).__name__, _shape(out[0] if isinstance(out, tuple) else out)))
            state["current"] = None
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return state, handles


def _describe(module: nn.Module) -> str:
    text = repr(module)
    return text if "\n" not in text and len(text) < 160 else type(module).__name__


def dry_build(spec: JobSpec | dict, dataset_info=None, *, limits: SpecLimits | None = None,
              data_settings=None, resolve_upload: Callable[[str], Any] | None = None) -> DryBuildResult:
    """Builds everything the spec names and runs one forward pass, the loss and a backward pass on a
    tiny random batch shaped like the dataset's samples. Any problem is a SpecError naming the layer
    (``model.layers[i]`` / ``model.nodes.<name>``), its type and the shapes involved. Returns the
    normalised spec (defaults and dataset-dependent values filled in), the parameter count, and the
    estimated FLOPs and memory per training step (see the module docstring). ``dataset_info`` is a
    workers.datasets.DatasetInfo; without it the dataset is described from ``spec.data``. The engine's
    global RNG is left as it was."""
    from .datasets import describe_dataset
    limits = limits or SpecLimits()
    if not isinstance(spec, JobSpec):
        spec = validate_spec(spec, limits)
    info = dataset_info if dataset_info is not None else describe_dataset(
        spec.data, seed=spec.training.seed, settings=data_settings, resolve_upload=resolve_upload)
    _check_loss_fits_task(spec, info)
    n_steps = steps_per_epoch(info.n_train, spec.data.batch_size, spec.data.drop_last)
    if n_steps < 1:
        raise SpecError("invalid_value", f"data.batch_size: {spec.data.batch_size} is larger than the "
                        f"{info.n_train} training samples and drop_last is true, so an epoch has no step",
                        "data.batch_size")
    notes: list[str] = []
    rng_state = engine.get_rng_state()
    try:
        engine.manual_seed(spec.training.seed)
        model = build_model(spec, limits=limits, warnings_out=notes)
        loss_fn = build_loss(spec)
        optimizer = build_optimizer(spec, model)
        build_scheduler(spec, optimizer, n_steps)
        model.train()
        n = min(2, spec.data.batch_size)
        x, y = example_batch(info, n)
        top = [(p, name, model._modules[name]) for p, name, _ in layer_paths(spec)]
        state, handles = _instrument(model, top)
        try:
            try:
                out = model(x)
            except SpecError:
                raise
            except Exception as e:  # noqa: BLE001 - an engine error in the dry forward is the spec's
                raise _forward_error(e, state, x, info, spec) from None
        finally:
            for h in handles:
                h.remove()
        if not isinstance(out, engine.Tensor):
            raise SpecError("shape_mismatch", f"{top[-1][0]}: the model's output is a {type(out).__name__}, "
                            "not a tensor", top[-1][0])
        _check_output(out, y, info, spec, top[-1][0] if spec.model.layers is not None else
                      f"model.nodes.{spec.model.output}", n)
        try:
            loss = compute_loss(loss_fn, out, y)
            loss.backward()
        except Exception as e:  # noqa: BLE001
            raise SpecError("shape_mismatch", f"loss ({spec.loss.type}): {e} (model output {_shape(out)}, targets "
                            f"{_shape(y)})", "loss") from None
    finally:
        engine.set_rng_state(rng_state)

    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    grad_bytes = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    scale = spec.data.batch_size / n
    activations = int((state["activations"] + _bytes(x) + _bytes(y)) * scale)
    memory = {"parameters": param_bytes, "gradients": grad_bytes,
              "optimizer_state": optimizer_state_factor(spec) * grad_bytes, "activations": activations}
    memory["total"] = sum(memory.values())
    forward_per_sample = int(state["flops"] / n)
    normalized = spec.normalized()
    normalized["data"].update({"standardize": info.standardize, **{k: v for k, v in info.options.items()
                                                                   if k in normalized["data"]}})
    if spec.scheduler is not None:
        normalized["scheduler"].update(scheduler_args(spec, n_steps))
    return DryBuildResult(
        spec=normalized, parameters=n_params, trainable_parameters=trainable,
        flops_per_step=3 * forward_per_sample * spec.data.batch_size, forward_flops_per_sample=forward_per_sample,
        memory=memory, output_shape=_shape(out)[1:], steps_per_epoch=n_steps,
        total_steps=n_steps * spec.training.epochs, dataset=info.to_dict(), warnings=notes)


def _forward_error(exc: Exception, state: dict, x, info, spec: JobSpec) -> SpecError:
    current = state["current"]
    done = state["done"]
    if current is None:   # failed between layers (a merge of mismatched values is a layer too)
        return SpecError("shape_mismatch", f"model: {exc}", "model")
    path, module, in_shapes = current
    text = str(exc)
    head = f"{path}: {text}" if type(module).__name__ in text[:80] else f"{path} ({_describe(module)}): {text}"
    shapes = " and ".join(str(s) for s in in_shapes) or "none"
    plural = len(in_shapes) > 1
    if done and spec.model.layers is not None:
        prev_path, prev_type, _ = done[-1]
        source = f"Its input, the output of {prev_path} ({prev_type}), has shape {shapes}"
    elif not done:
        source = f"Its input{'s have' if plural else ' has'} shape{'s' if plural else ''} {shapes} (the dataset " \
                 f"{info.name}: {list(info.input_shape)} per sample)"
    else:
        source = f"Its input{'s have' if plural else ' has'} shape{'s' if plural else ''} {shapes}"
    msg = f"{head.rstrip('.')}. {source}; a dry batch of {x.shape[0]} samples"
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) and info.name == "digits" and \
            info.options.get("layout") != "image":
        msg += "; for convolutions set data.layout: image (digits as 1x8x8 images)"
    return SpecError("shape_mismatch", msg + ".", path)
