"""workers.spec: parsing JSON and YAML job specs, every error with its code and param, the registry."""
import copy
import json

import pytest

from workers.spec import (JobSpec, SpecError, SpecLimits, parse_spec, registry, registry_dump, topological_order,
                          validate_spec)

DESIGN_EXAMPLE = """\
name: digits-mlp
model:
  layers:                              # a Sequential; or `nodes:` + `output:` for a graph with skips
    - {type: Flatten}
    - {type: Linear, in_features: 64, out_features: 128}
    - {type: ReLU}
    - {type: Linear, in_features: 128, out_features: 10}
data: {dataset: digits, validation_split: 0.2, batch_size: 64, shuffle: true}
loss: {type: CrossEntropyLoss}
optimizer: {type: AdamW, lr: 0.001, weight_decay: 0.01}
scheduler: {type: CosineAnnealingLR, T_max: 20}
training: {epochs: 20, seed: 0, grad_clip_norm: 1.0, checkpoint_every_epochs: 1}
resources: {device: auto}              # auto | cpu | cuda
"""

BASE = {
    "name": "t",
    "model": {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 10}]},
    "data": {"dataset": "digits"},
    "loss": {"type": "CrossEntropyLoss"},
    "optimizer": {"type": "SGD", "lr": 0.1},
}

GRAPH = {
    **BASE,
    "model": {"nodes": {
        "flat": {"type": "Flatten", "inputs": ["input"]},
        "fc1": {"type": "Linear", "in_features": 64, "out_features": 64, "inputs": ["flat"]},
        "act": {"type": "ReLU", "inputs": ["fc1"]},
        "res": {"type": "Add", "inputs": ["flat", "act"]},
        "head": {"type": "Linear", "in_features": 64, "out_features": 10, "inputs": ["res"]},
    }, "output": "head"},
}


def with_(base: dict, path: str, value) -> dict:
    """A copy of ``base`` with the dotted ``path`` set (``value`` DELETE removes it)."""
    out = copy.deepcopy(base)
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = out
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


DELETE = object()


def err(data, limits=None) -> SpecError:
    with pytest.raises(SpecError) as info:
        validate_spec(data, limits)
    return info.value


# ---- parsing -------------------------------------------------------------------------------------

def test_design_example_yaml_verbatim():
    spec = parse_spec(DESIGN_EXAMPLE, "application/yaml")
    assert isinstance(spec, JobSpec)
    assert spec.name == "digits-mlp"
    assert [l.type for l in spec.model.layers] == ["Flatten", "Linear", "ReLU", "Linear"]
    assert spec.model.layers[1].args == {"in_features": 64, "out_features": 128}
    assert spec.data.batch_size == 64 and spec.data.validation_split == 0.2 and spec.data.shuffle is True
    assert spec.optimizer.type == "AdamW" and spec.optimizer.args == {"lr": 0.001, "weight_decay": 0.01}
    assert spec.scheduler.type == "CosineAnnealingLR" and spec.scheduler.args == {"T_max": 20}
    assert spec.scheduler.interval == "epoch"
    assert spec.training.epochs == 20 and spec.training.grad_clip_norm == 1.0
    assert spec.resources.device == "auto"


def test_json_and_yaml_give_the_same_spec():
    from_yaml = parse_spec(DESIGN_EXAMPLE, "application/yaml; charset=utf-8")
    text = json.dumps(from_yaml.normalized())
    from_json = parse_spec(text, "application/json")
    assert from_json.normalized() == from_yaml.normalized()
    assert parse_spec(text.encode(), None).normalized() == from_yaml.normalized()   # bytes, default JSON
    for media in ("application/x-yaml", "text/yaml"):
        assert parse_spec(DESIGN_EXAMPLE, media).normalized() == from_yaml.normalized()


def test_normalized_fills_defaults_and_round_trips():
    spec = validate_spec(BASE)
    norm = spec.normalized()
    assert norm["training"] == {"epochs": 10, "seed": 0, "grad_clip_norm": None, "checkpoint_every_epochs": 1,
                                "checkpoint_every_steps": None, "max_runtime_s": None}
    assert norm["resources"] == {"device": "auto"}
    assert norm["scheduler"] is None
    assert norm["model"] == BASE["model"]
    assert validate_spec(norm).normalized() == norm
    graph = validate_spec(GRAPH).normalized()
    assert graph["model"] == GRAPH["model"]


def test_yaml_scientific_floats_and_integral_floats():
    spec = parse_spec(DESIGN_EXAMPLE.replace("lr: 0.001", "lr: 1e-3").replace("out_features: 10}",
                                                                              "out_features: 10.0}"),
                      "application/yaml")
    assert spec.optimizer.args["lr"] == 0.001
    assert spec.model.layers[3].args["out_features"] == 10 and isinstance(spec.model.layers[3].args["out_features"],
                                                                          int)


def test_checkpoint_every_steps_alone_replaces_the_epoch_default():
    spec = validate_spec({**BASE, "training": {"checkpoint_every_steps": 100}})
    assert spec.training.checkpoint_every_steps == 100 and spec.training.checkpoint_every_epochs is None
    both = validate_spec({**BASE, "training": {"checkpoint_every_steps": 100, "checkpoint_every_epochs": 2}})
    assert both.training.checkpoint_every_epochs == 2


# ---- syntax and size -----------------------------------------------------------------------------

def test_spec_too_large_is_413():
    with pytest.raises(SpecError) as e:
        parse_spec("{}" + " " * 200, "application/json", SpecLimits(max_spec_bytes=100))
    assert e.value.code == "spec_too_large" and e.value.http_status == 413 and e.value.param is None
    assert "100" in e.value.message


@pytest.mark.parametrize("text,media,where", [
    ('{"name": "x", ', "application/json", "line 1"),
    ("name: [unclosed", "application/yaml", "line 1"),
    ("a: 1\n b: 2\n", "application/yaml", "line 2"),
])
def test_malformed_text(text, media, where):
    with pytest.raises(SpecError) as e:
        parse_spec(text, media)
    assert e.value.code == "invalid_syntax" and e.value.http_status == 422 and where in e.value.message


def test_json_nan_and_non_utf8_refused():
    with pytest.raises(SpecError) as e:
        parse_spec('{"name": NaN}', "application/json")
    assert e.value.code == "invalid_syntax"
    with pytest.raises(SpecError) as e:
        parse_spec(b"\xff\xfe", "application/json")
    assert e.value.code == "invalid_syntax"


def test_unsupported_media_type():
    with pytest.raises(SpecError) as e:
        parse_spec("x", "text/plain")
    assert e.value.code == "unsupported_media_type" and e.value.http_status == 415


def test_yaml_aliases_refused():
    text = "a: &x [1, 2]\nb: *x\n"
    with pytest.raises(SpecError) as e:
        parse_spec(text, "application/yaml")
    assert e.value.code == "invalid_syntax" and "alias" in e.value.message


@pytest.mark.parametrize("text", ["[1, 2]", "null", "3"])
def test_top_level_must_be_a_mapping(text):
    with pytest.raises(SpecError) as e:
        parse_spec(text, "application/json")
    assert e.value.code == "invalid_value" and e.value.param is None


# ---- schema errors, with their param -------------------------------------------------------------

@pytest.mark.parametrize("path,value,code,param", [
    ("data", DELETE, "missing_field", "data"),
    ("loss", DELETE, "missing_field", "loss"),
    ("data.batchsize", 3, "unknown_field", "data.batchsize"),
    ("extra", 1, "unknown_field", "extra"),
    ("data.batch_size", 0, "invalid_value", "data.batch_size"),
    ("data.batch_size", "64", "invalid_value", "data.batch_size"),
    ("data.batch_size", 65_537, "limit_exceeded", "data.batch_size"),
    ("data.validation_split", 1.0, "invalid_value", "data.validation_split"),
    ("data.layout", "square", "invalid_value", "data.layout"),
    ("data.seq_len", 5000, "limit_exceeded", "data.seq_len"),
    ("training", {"epochs": 0}, "invalid_value", "training.epochs"),
    ("training", {"epochs": -5}, "invalid_value", "training.epochs"),
    ("training", {"epochs": 10_001}, "limit_exceeded", "training.epochs"),
    ("training", {"epochs": True}, "invalid_value", "training.epochs"),
    ("training", {"grad_clip_norm": 0}, "invalid_value", "training.grad_clip_norm"),
    ("resources", {"device": "tpu"}, "invalid_value", "resources.device"),
    ("model.layers.1", {"in_features": 64}, "missing_field", "model.layers[1].type"),
    ("model.layers", [], "invalid_value", "model"),
    ("model.nodes", {}, "invalid_value", "model"),
    ("scheduler", {"type": "StepLR", "step_size": 2, "interval": "batch"}, "invalid_value", "scheduler.interval"),
    ("name", "", "invalid_value", "name"),
])
def test_schema_errors(path, value, code, param):
    e = err(with_(BASE, path, value))
    assert (e.code, e.param) == (code, param), e
    assert e.message.startswith(param) and e.http_status == 422
    assert e.to_dict() == {"code": code, "message": e.message, "param": param}


def test_unknown_field_suggests_the_right_one():
    e = err(with_(BASE, "data.batchsize", 3))
    assert "batch_size" in e.message


def test_all_errors_are_listed():
    e = err({"model": 1})
    params = {x["param"] for x in e.errors}
    assert {"model", "data", "loss", "optimizer"} <= params


def test_limits_are_configurable():
    limits = SpecLimits(max_layers=2, max_epochs=5, max_batch_size=8)
    many = with_(BASE, "model.layers", [{"type": "ReLU"}] * 3)
    e = err(many, limits)
    assert (e.code, e.param) == ("limit_exceeded", "model") and "max_layers" in e.message
    assert err(with_(BASE, "training", {"epochs": 6}), limits).code == "limit_exceeded"
    assert err(with_(BASE, "data.batch_size", 9), limits).param == "data.batch_size"
    default_layers = with_(BASE, "model.layers", [{"type": "ReLU"}] * 257)
    assert err(default_layers).code == "limit_exceeded"


def test_limits_from_settings():
    class S:
        max_body_bytes, max_layers, max_parameters, max_epochs, max_batch_size = 10, 2, 3, 4, 5
    assert SpecLimits.from_settings(S()) == SpecLimits(10, 2, 3, 4, 5)


def test_layers_and_nodes_together_or_neither():
    both = with_(BASE, "model.nodes", GRAPH["model"]["nodes"])
    assert err(both).param == "model"
    assert err(with_(BASE, "model", {})).param == "model"
    assert err(with_(BASE, "model.output", "x")).param == "model"
    assert err(with_(GRAPH, "model.output", DELETE)).code == "missing_field"


# ---- vocabulary errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("path,value,code,param,needle", [
    ("model.layers.1.type", "Linaer", "unknown_type", "model.layers[1].type", "Linear"),
    ("model.layers.1.type", "Sequential", "unknown_type", "model.layers[1].type", "unknown layer"),
    ("model.layers.1.type", "__class__", "unknown_type", "model.layers[1].type", "unknown layer"),
    ("model.layers.1.type", "MSELoss", "unknown_type", "model.layers[1].type", "is a loss"),
    ("model.layers.1.type", "Add", "unknown_type", "model.layers[1].type", "graph"),
    ("loss.type", "CrossEntropy", "unknown_type", "loss.type", "CrossEntropyLoss"),
    ("loss.type", "Linear", "unknown_type", "loss.type", "is a layer"),
    ("optimizer.type", "Adamm", "unknown_type", "optimizer.type", "Adam"),
    ("optimizer.type", "LBFGS", "unknown_type", "optimizer.type", "closure"),
    ("optimizer.type", "Optimizer", "unknown_type", "optimizer.type", "abstract"),
    ("scheduler", {"type": "LambdaLR"}, "unknown_type", "scheduler.type", "function"),
    ("scheduler", {"type": "CosineAnealingLR"}, "unknown_type", "scheduler.type", "CosineAnnealingLR"),
    ("model.layers.1.in_feature", 64, "invalid_argument", "model.layers[1].in_feature", "in_features"),
    ("model.layers.1.out_features", DELETE, "invalid_argument", "model.layers[1].out_features", "needs"),
    ("model.layers.1.out_features", "ten", "invalid_argument", "model.layers[1].out_features", "integer"),
    ("model.layers.1.out_features", True, "invalid_argument", "model.layers[1].out_features", "integer"),
    ("model.layers.1.out_features", 10.5, "invalid_argument", "model.layers[1].out_features", "integer"),
    ("model.layers.1.out_features", 1 << 30, "limit_exceeded", "model.layers[1].out_features", "largest"),
    ("model.layers.1.bias", "yes", "invalid_argument", "model.layers[1].bias", "true/false"),
    ("model.layers.1.device", "cuda", "invalid_argument", "model.layers[1].device", "service sets it"),
    ("model.layers.1.dtype", "float64", "invalid_argument", "model.layers[1].dtype", "service sets it"),
    ("model.layers.1.causal", True, "invalid_argument", "model.layers[1].causal", "attention"),
    ("model.layers.1.inputs", ["input"], "invalid_argument", "model.layers[1].inputs", "graph"),
    ("model.layers.1.args", {"in_features": 3}, "invalid_argument", "model.layers[1].args", "next to `type`"),
    ("model.layers.0.start_dim", {"a": 1}, "invalid_argument", "model.layers[0].start_dim", "integer"),
    ("loss.label_smoothing", "lots", "invalid_argument", "loss.label_smoothing", "number"),
    ("loss.weight", "heavy", "invalid_argument", "loss.weight", "list of numbers"),
    ("loss.size_average", True, "invalid_argument", "loss.size_average", "cannot be set"),
    ("optimizer.params", [], "invalid_argument", "optimizer.params", "service sets it"),
    ("optimizer.lr", None, "invalid_argument", "optimizer.lr", "number"),
    ("optimizer.momentum", "high", "invalid_argument", "optimizer.momentum", "number"),
    ("scheduler", {"type": "StepLR"}, "invalid_argument", "scheduler.step_size", "needs"),
    ("scheduler", {"type": "StepLR", "step_size": 1, "last_epoch": 3}, "invalid_argument", "scheduler.last_epoch",
     "cannot be set"),
    ("scheduler", {"type": "ReduceLROnPlateau", "interval": "step"}, "invalid_value", "scheduler.interval", "epoch"),
    ("scheduler", {"type": "OneCycleLR", "max_lr": 0.1, "epochs": 3}, "invalid_argument", "scheduler",
     "steps_per_epoch"),
])
def test_vocabulary_errors(path, value, code, param, needle):
    e = err(with_(BASE, path, value))
    assert (e.code, e.param) == (code, param), e
    assert needle in e.message, e.message


def test_yaml_nan_in_an_argument_refused():
    text = DESIGN_EXAMPLE.replace("lr: 0.001", "lr: .nan")
    with pytest.raises(SpecError) as e:
        parse_spec(text, "application/yaml")
    assert e.value.param == "optimizer.lr" and "finite" in e.value.message


def test_arguments_are_coerced_and_lists_kept():
    spec = validate_spec(with_(BASE, "model.layers", [
        {"type": "Conv2d", "in_channels": 1, "out_channels": 4.0, "kernel_size": [3, 3], "padding": 1},
        {"type": "Flatten"}, {"type": "Linear", "in_features": 256, "out_features": 10}]))
    assert spec.model.layers[0].args == {"in_channels": 1, "out_channels": 4, "kernel_size": [3, 3], "padding": 1}
    s = validate_spec(with_(BASE, "optimizer", {"type": "Adam", "lr": 1, "betas": [0.8, 0.9]}))
    assert s.optimizer.args == {"lr": 1.0, "betas": [0.8, 0.9]} and isinstance(s.optimizer.args["lr"], float)
    s = validate_spec(with_(BASE, "scheduler", {"type": "CosineAnnealingLR", "interval": "step"}))
    assert s.scheduler.args == {} and s.scheduler.interval == "step"   # T_max filled in by the build


def test_nested_layer_arguments():
    encoder = {"type": "TransformerEncoder", "num_layers": 2,
               "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 2},
               "norm": {"type": "LayerNorm", "normalized_shape": 16}}
    spec = validate_spec(with_(BASE, "model.layers", [encoder]))
    assert spec.model.layers[0].args["encoder_layer"] == {"type": "TransformerEncoderLayer", "d_model": 16,
                                                          "nhead": 2}
    bad = copy.deepcopy(encoder)
    bad["encoder_layer"]["d_modl"] = 16
    e = err(with_(BASE, "model.layers", [bad]))
    assert (e.code, e.param) == ("invalid_argument", "model.layers[0].encoder_layer.d_modl")
    e = err(with_(BASE, "model.layers", [{**encoder, "encoder_layer": 3}]))
    assert e.param == "model.layers[0].encoder_layer" and "mapping" in e.message
    e = err(with_(BASE, "model.layers", [{**encoder, "norm": {"type": "Nope"}}]))
    assert e.param == "model.layers[0].norm.type"


def test_causal_attention_layers():
    spec = validate_spec(with_(BASE, "model.layers", [
        {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "batch_first": True, "causal": True}]))
    assert spec.model.layers[0].causal is True
    assert spec.normalized()["model"]["layers"][0]["causal"] is True
    assert "causal" not in spec.model.layers[0].args
    e = err(with_(BASE, "model.layers", [{"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2,
                                           "causal": "yes"}]))
    assert e.param == "model.layers[0].causal"


# ---- graphs --------------------------------------------------------------------------------------

def test_graph_parses_in_written_order():
    spec = validate_spec(GRAPH)
    assert list(spec.model.nodes) == ["flat", "fc1", "act", "res", "head"]
    assert spec.model.nodes["res"].inputs == ["flat", "act"]
    assert topological_order(spec.model) == ["flat", "fc1", "act", "res", "head"]


def test_graph_order_follows_inputs_not_the_page():
    nodes = dict(reversed(list(GRAPH["model"]["nodes"].items())))
    spec = validate_spec(with_(GRAPH, "model.nodes", nodes))
    order = topological_order(spec.model)
    for name, node in spec.model.nodes.items():
        for src in node.inputs:
            if src in spec.model.nodes:
                assert order.index(src) < order.index(name)


@pytest.mark.parametrize("path,value,code,param,needle", [
    ("model.nodes.fc1.inputs", ["flatt"], "invalid_graph", "model.nodes.fc1.inputs[0]", "flat"),
    ("model.nodes.fc1.inputs", [], "invalid_value", "model.nodes.fc1.inputs", ""),
    ("model.nodes.fc1.inputs", ["fc1"], "invalid_graph", "model.nodes.fc1.inputs[0]", "itself"),
    ("model.nodes.flat.inputs", ["head"], "invalid_graph", None, "cycle"),
    ("model.nodes.res.inputs", ["act"], "invalid_graph", "model.nodes.res.inputs", "two or more"),
    ("model.nodes.res.type", "Linear", "invalid_argument", "model.nodes.res.in_features", "needs"),
    ("model.nodes.fc1.type", "Concatenate", "unknown_type", "model.nodes.fc1.type", "Concat"),
    ("model.nodes.extra", {"type": "ReLU", "inputs": ["act"]}, "invalid_graph", "model.nodes.extra", "output"),
    ("model.nodes.input", {"type": "ReLU", "inputs": ["act"]}, "invalid_graph", "model.nodes.input", "reserved"),
    ("model.nodes.forward", {"type": "ReLU", "inputs": ["act"]}, "invalid_graph", "model.nodes.forward", "names"),
    ("model.nodes.my-node", {"type": "ReLU", "inputs": ["act"]}, "invalid_graph", "model.nodes.my-node", "names"),
    ("model.output", "nope", "invalid_graph", "model.output", "nope"),
    ("model.nodes.fc1.causal", True, "invalid_argument", "model.nodes.fc1.causal", "attention"),
    ("model.nodes.res.dim", 1, "invalid_argument", "model.nodes.res.dim", "no argument"),
])
def test_graph_errors(path, value, code, param, needle):
    e = err(with_(GRAPH, path, value))
    assert e.code == code, e
    if param is not None:
        assert e.param == param, e
    else:
        assert e.param.startswith("model.nodes.") and e.param.endswith(".inputs")
    assert needle in e.message


def test_graph_must_read_input():
    nodes = {"pos": {"type": "Embedding", "num_embeddings": 8, "embedding_dim": 4, "inputs": ["positions"]}}
    e = err(with_(GRAPH, "model", {"nodes": nodes, "output": "pos"}))
    assert (e.code, e.param) == ("invalid_graph", "model.nodes")


def test_concat_takes_dim():
    spec = validate_spec(with_(GRAPH, "model.nodes.res", {"type": "Concat", "dim": 1, "inputs": ["flat", "act"]}))
    assert spec.model.nodes["res"].args == {"dim": 1}


# ---- the registry --------------------------------------------------------------------------------

def test_registry_contents():
    from engine import nn, optim
    from engine.nn.modules import loss as loss_mod
    from engine.optim import lr_scheduler
    reg = registry()
    layers = reg["layer"]
    for name in ("Linear", "Conv2d", "Conv1d", "ConvTranspose2d", "MaxPool2d", "BatchNorm1d", "LayerNorm", "ReLU",
                 "GELU", "Dropout", "Flatten", "Embedding", "RNN", "LSTM", "GRU", "LSTMCell", "MultiheadAttention",
                 "TransformerEncoderLayer", "TransformerEncoder", "Transformer"):
        assert name in layers
        assert layers[name].cls is getattr(nn, name)
    for name in ("Module", "Sequential", "ModuleList", "ModuleDict", "ParameterList", "ParameterDict", "RNNBase",
                 "RNNCellBase", "Parameter", "functional", "init", "CrossEntropyLoss"):
        assert name not in layers
    assert all(issubclass(e.cls, nn.Module) for e in layers.values())
    assert set(reg["loss"]) == set(loss_mod.__all__)
    assert set(reg["merge"]) == {"Add", "Mul", "Concat"}
    assert set(reg["optimizer"]) == set(optim.__all__) - {"Optimizer", "LBFGS", "lr_scheduler"}
    assert set(reg["scheduler"]) == set(lr_scheduler.__all__) - {"LRScheduler", "LambdaLR", "MultiplicativeLR",
                                                                "SequentialLR", "ChainedScheduler"}


def test_registry_arguments():
    lin = registry()["layer"]["Linear"]
    assert [a.name for a in lin.args] == ["in_features", "out_features", "bias"]
    assert lin.arg("in_features").required and lin.arg("in_features").annotation == "int"
    assert lin.arg("bias").default is True
    assert "params" not in registry()["optimizer"]["Adam"].arg_names
    assert registry()["optimizer"]["Adam"].arg("lr").default == 0.001
    assert {"size_average", "reduce"}.isdisjoint(registry()["loss"]["CrossEntropyLoss"].arg_names)
    assert {"optimizer", "last_epoch"}.isdisjoint(registry()["scheduler"]["StepLR"].arg_names)
    assert registry()["layer"]["TransformerEncoder"].arg("encoder_layer").module_valued


def test_registry_dump_is_json():
    dump = registry_dump()
    assert set(dump) == {"layers", "merges", "losses", "optimizers", "schedulers"}
    text = json.dumps(dump)
    lin = next(e for e in dump["layers"] if e["name"] == "Linear")
    assert lin["args"][2] == {"name": "bias", "type": "bool", "required": False, "default": True}
    assert lin["doc"]
    enc = next(e for e in dump["layers"] if e["name"] == "TransformerEncoderLayer")
    assert next(a for a in enc["args"] if a["name"] == "activation")["default"] == "relu"
    assert "LBFGS" not in text.split('"optimizers"')[1]


def test_deep_nesting_refused():
    deep_json = '{"a":' * 5000 + "1" + "}" * 5000
    with pytest.raises(SpecError) as e:
        parse_spec(deep_json)
    assert e.value.code == "invalid_syntax"
    with pytest.raises(SpecError) as e:
        parse_spec("a: " + "[" * 5000 + "]" * 5000, "application/yaml")
    assert e.value.code == "invalid_syntax"
    nested = with_(BASE, "model.layers", [{"type": "AdaptiveAvgPool2d", "output_size": [[[[[[1]]]]]]}])
    assert err(nested).param.startswith("model.layers[0].output_size")
