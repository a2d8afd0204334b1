"""workers.build: models from specs (state_dict keys and outputs as in PyTorch), losses, optimizers,
schedulers, and the dry build's errors and figures."""
import copy

import numpy as np
import pytest

import engine
from engine import nn
from workers.build import (GraphModel, SpecSequential, build_loss, build_model, build_optimizer, build_scheduler,
                           compute_loss, count_correct, dry_build, estimate_parameters, optimizer_state_factor,
                           probabilities)
from workers.datasets import describe_dataset
from workers.spec import SpecError, SpecLimits, validate_spec

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def spec_of(model: dict, dataset="digits", loss="CrossEntropyLoss", optimizer=None, **data) -> dict:
    return {"name": "t", "model": model, "data": {"dataset": dataset, "batch_size": 16, **data},
            "loss": {"type": loss}, "optimizer": optimizer or {"type": "Adam", "lr": 0.01}}


MLP = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 32},
                  {"type": "ReLU"}, {"type": "Linear", "in_features": 32, "out_features": 10}]}

RESIDUAL = {"nodes": {
    "fc_in": {"type": "Linear", "in_features": 64, "out_features": 32, "inputs": ["input"]},
    "act1": {"type": "ReLU", "inputs": ["fc_in"]},
    "fc_mid": {"type": "Linear", "in_features": 32, "out_features": 32, "inputs": ["act1"]},
    "skip": {"type": "Add", "inputs": ["act1", "fc_mid"]},
    "norm": {"type": "LayerNorm", "normalized_shape": 32, "inputs": ["skip"]},
    "head": {"type": "Linear", "in_features": 32, "out_features": 10, "inputs": ["norm"]},
}, "output": "head"}

CNN = {"layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 8, "kernel_size": 3, "padding": 1},
                  {"type": "BatchNorm2d", "num_features": 8}, {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
                  {"type": "Flatten"}, {"type": "Linear", "in_features": 128, "out_features": 10}]}

CHAR_LSTM = {"layers": [{"type": "Embedding", "num_embeddings": 62, "embedding_dim": 16},
                        {"type": "LSTM", "input_size": 16, "hidden_size": 24, "num_layers": 2, "batch_first": True},
                        {"type": "Linear", "in_features": 24, "out_features": 62}]}

CHAR_TRANSFORMER = {"nodes": {
    "tok": {"type": "Embedding", "num_embeddings": 62, "embedding_dim": 16, "inputs": ["input"]},
    "pos": {"type": "Embedding", "num_embeddings": 32, "embedding_dim": 16, "inputs": ["positions"]},
    "h": {"type": "Add", "inputs": ["tok", "pos"]},
    "encoder": {"type": "TransformerEncoder", "num_layers": 2, "enable_nested_tensor": False, "causal": True,
                "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 2,
                                  "dim_feedforward": 32, "dropout": 0.0, "batch_first": True, "norm_first": True},
                "norm": {"type": "LayerNorm", "normalized_shape": 16}, "inputs": ["h"]},
    "head": {"type": "Linear", "in_features": 16, "out_features": 62, "inputs": ["encoder"]},
}, "output": "head"}


def to_torch(model: nn.Module, torch_model) -> None:
    state = {k: torch.from_numpy(np.array(v.numpy())) for k, v in model.state_dict().items()}
    torch_model.load_state_dict(state)


def outputs_match(model, torch_model, x: np.ndarray, tol=1e-5, forward=None):
    model.eval()
    torch_model.eval()
    to_torch(model, torch_model)
    with engine.no_grad():
        ours = model(engine.from_numpy(x)).numpy()
    with torch.no_grad():
        tx = torch.from_numpy(x)
        theirs = (forward(torch_model, tx) if forward else torch_model(tx)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


def build(model: dict, **kw):
    return build_model(validate_spec(spec_of(model, **kw)))


# ---- models and their state_dict keys ------------------------------------------------------------

def test_sequential_mlp_matches_torch():
    model = build(MLP)
    assert isinstance(model, SpecSequential) and isinstance(model, nn.Sequential)
    ref = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    assert list(model.state_dict()) == list(ref.state_dict())
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    outputs_match(model, ref, np.random.default_rng(0).standard_normal((5, 64)).astype(np.float32))


def test_residual_graph_matches_torch():
    model = build(RESIDUAL)
    assert isinstance(model, GraphModel)

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_in, self.act1 = torch.nn.Linear(64, 32), torch.nn.ReLU()
            self.fc_mid, self.norm = torch.nn.Linear(32, 32), torch.nn.LayerNorm(32)
            self.head = torch.nn.Linear(32, 10)

        def forward(self, x):
            a = self.act1(self.fc_in(x))
            return self.head(self.norm(a + self.fc_mid(a)))
    ref = Residual()
    assert list(model.state_dict()) == list(ref.state_dict())
    outputs_match(model, ref, np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32))


def test_cnn_on_digit_images_matches_torch():
    model = build(CNN, layout="image")
    ref = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(128, 10))
    assert list(model.state_dict()) == list(ref.state_dict())   # includes the BatchNorm buffers
    outputs_match(model, ref, np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32))


def test_lstm_passes_its_first_output_and_keeps_torch_keys():
    model = build(CHAR_LSTM, dataset="text:tinyshakespeare")
    ref = torch.nn.Sequential(torch.nn.Embedding(62, 16), torch.nn.LSTM(16, 24, num_layers=2, batch_first=True),
                              torch.nn.Linear(24, 62))
    assert list(model.state_dict()) == list(ref.state_dict())
    assert "1.weight_ih_l0" in model.state_dict()

    def forward(m, x):
        return m[2](m[1](m[0](x))[0])
    outputs_match(model, ref, np.random.default_rng(3).integers(0, 62, (2, 7)), forward=forward)


def test_causal_transformer_graph_matches_torch():
    model = build(CHAR_TRANSFORMER, dataset="text:tinyshakespeare", seq_len=32)

    class Ref(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = torch.nn.Embedding(62, 16), torch.nn.Embedding(32, 16)
            layer = torch.nn.TransformerEncoderLayer(16, 2, 32, 0.0, batch_first=True, norm_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(16),
                                                       enable_nested_tensor=False)
            self.head = torch.nn.Linear(16, 62)

        def forward(self, x):
            n = x.shape[1]
            h = self.tok(x) + self.pos(torch.arange(n))
            mask = torch.nn.Transformer.generate_square_subsequent_mask(n)
            return self.head(self.encoder(h, mask=mask, is_causal=True))
    ref = Ref()
    assert list(model.state_dict()) == list(ref.state_dict())
    outputs_match(model, ref, np.random.default_rng(4).integers(0, 62, (2, 9)), tol=1e-4)
    # causal: changing a later token does not change earlier outputs
    x = np.random.default_rng(5).integers(0, 62, (1, 9))
    y = x.copy()
    y[0, -1] = (y[0, -1] + 1) % 62
    with engine.no_grad():
        a, b = model(engine.from_numpy(x)).numpy(), model(engine.from_numpy(y)).numpy()
    np.testing.assert_allclose(a[0, :-1], b[0, :-1], atol=1e-6)
    assert not np.allclose(a[0, -1], b[0, -1])


def test_multihead_attention_layer_self_attends():
    layers = {"layers": [{"type": "Linear", "in_features": 1, "out_features": 8},
                         {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "batch_first": True},
                         {"type": "Linear", "in_features": 8, "out_features": 1}]}
    model = build(layers, dataset="sine_sequences", loss="MSELoss")
    ref = torch.nn.Sequential(torch.nn.Linear(1, 8), torch.nn.MultiheadAttention(8, 2, batch_first=True),
                              torch.nn.Linear(8, 1))
    assert list(model.state_dict()) == list(ref.state_dict())

    def forward(m, x):
        h = m[0](x)
        return m[2](m[1](h, h, h, need_weights=False)[0])
    outputs_match(model, ref, np.random.default_rng(6).standard_normal((2, 5, 1)).astype(np.float32), forward=forward)


def test_concat_and_mul_nodes():
    graph = {"nodes": {
        "a": {"type": "Linear", "in_features": 64, "out_features": 8, "inputs": ["input"]},
        "b": {"type": "Linear", "in_features": 64, "out_features": 8, "inputs": ["input"]},
        "gate": {"type": "Sigmoid", "inputs": ["b"]},
        "m": {"type": "Mul", "inputs": ["a", "gate"]},
        "c": {"type": "Concat", "inputs": ["a", "m"]},
        "head": {"type": "Linear", "in_features": 16, "out_features": 10, "inputs": ["c"]},
    }, "output": "head"}
    model = build(graph)
    assert list(model.state_dict()) == ["a.weight", "a.bias", "b.weight", "b.bias", "head.weight", "head.bias"]
    x = engine.randn(3, 64)
    a, b = model.a(x), model.b(x)
    expect = model.head(engine.cat([a, a * b.sigmoid()], -1))
    np.testing.assert_allclose(model(x).detach().numpy(), expect.detach().numpy(), rtol=1e-6)


def test_build_is_reproducible_from_the_seed():
    engine.manual_seed(7)
    a = build(MLP).state_dict()
    engine.manual_seed(7)
    b = build(MLP).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


# ---- loss, optimizer, scheduler ------------------------------------------------------------------

def test_loss_optimizer_scheduler():
    spec = validate_spec({**spec_of(MLP), "loss": {"type": "CrossEntropyLoss", "label_smoothing": 0.1,
                                                   "weight": [1.0] * 10},
                          "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True},
                          "scheduler": {"type": "CosineAnnealingLR", "interval": "step"},
                          "training": {"epochs": 3}})
    model = build_model(spec)
    loss = build_loss(spec)
    assert isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing == 0.1 and loss.weight.shape == (10,)
    opt = build_optimizer(spec, model)
    assert isinstance(opt, engine.optim.SGD) and opt.param_groups[0]["nesterov"] is True
    sched = build_scheduler(spec, opt, 5)
    assert isinstance(sched, engine.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 15
    adam = validate_spec({**spec_of(MLP), "optimizer": {"type": "Adam", "betas": [0.8, 0.99]}})
    assert build_optimizer(adam, model).param_groups[0]["betas"] == (0.8, 0.99)
    assert build_scheduler(adam, opt, 5) is None
    one = validate_spec({**spec_of(MLP), "scheduler": {"type": "OneCycleLR", "max_lr": 0.1, "interval": "step"},
                         "training": {"epochs": 2}})
    assert build_scheduler(one, build_optimizer(one, model), 7).total_steps == 14


def test_constructor_errors_name_the_argument():
    spec = validate_spec({**spec_of(MLP), "optimizer": {"type": "Adam", "lr": -1.0}})
    with pytest.raises(SpecError) as e:
        build_optimizer(spec, build_model(spec))
    assert e.value.code == "invalid_argument" and e.value.param == "optimizer.lr"
    bad = {"layers": [{"type": "MultiheadAttention", "embed_dim": 10, "num_heads": 3}]}
    with pytest.raises(SpecError) as e:
        build(bad, dataset="sine_sequences", loss="MSELoss")
    assert e.value.code == "invalid_argument" and e.value.param.startswith("model.layers[0]")
    assert "divisible" in e.value.message
    rnn = {"layers": [{"type": "RNN", "input_size": 1, "hidden_size": 4, "nonlinearity": "sigmoid"}]}
    with pytest.raises(SpecError) as e:
        build(rnn, dataset="sine_sequences", loss="MSELoss")
    assert e.value.param == "model.layers[0].nonlinearity"


def test_compute_loss_flattens_sequences_like_torch():
    rng = np.random.default_rng(0)
    out, y = rng.standard_normal((2, 5, 7)).astype(np.float32), rng.integers(0, 7, (2, 5))
    ours = compute_loss(nn.CrossEntropyLoss(), engine.from_numpy(out), engine.from_numpy(y)).item()
    theirs = torch.nn.functional.cross_entropy(torch.from_numpy(out).flatten(0, 1), torch.from_numpy(y).flatten())
    assert ours == pytest.approx(theirs.item(), rel=1e-6)
    logits, labels = rng.standard_normal((6, 1)).astype(np.float32), rng.integers(0, 2, 6)
    ours = compute_loss(nn.BCEWithLogitsLoss(), engine.from_numpy(logits), engine.from_numpy(labels)).item()
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                                  torch.from_numpy(labels).float()[:, None])
    assert ours == pytest.approx(theirs.item(), rel=1e-6)


def test_count_correct_and_probabilities():
    out = engine.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    y = engine.tensor([0, 1, 1])
    assert count_correct(out, y, nn.CrossEntropyLoss()) == (2, 3)
    assert count_correct(engine.tensor([[1.0], [-1.0]]), engine.tensor([1, 1]), nn.BCEWithLogitsLoss()) == (1, 2)
    assert count_correct(out, out, nn.MSELoss()) is None
    p = probabilities(out, "CrossEntropyLoss").numpy()
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-6)
    pb = probabilities(engine.tensor([[0.0]]), "BCEWithLogitsLoss").numpy()
    np.testing.assert_allclose(pb, [[0.5, 0.5]])
    assert probabilities(out, "MSELoss") is None


# ---- parameter estimate --------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [
    {"type": "Linear", "in_features": 7, "out_features": 3},
    {"type": "Linear", "in_features": 7, "out_features": 3, "bias": False},
    {"type": "Bilinear", "in1_features": 3, "in2_features": 4, "out_features": 5},
    {"type": "Conv1d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2},
    {"type": "Conv2d", "in_channels": 3, "out_channels": 5, "kernel_size": [3, 2]},
    {"type": "ConvTranspose2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "groups": 2},
    {"type": "Embedding", "num_embeddings": 11, "embedding_dim": 5},
    {"type": "BatchNorm1d", "num_features": 9},
    {"type": "GroupNorm", "num_groups": 2, "num_channels": 4},
    {"type": "LayerNorm", "normalized_shape": [3, 4]},
    {"type": "LSTM", "input_size": 5, "hidden_size": 7, "num_layers": 2, "bidirectional": True},
    {"type": "LSTM", "input_size": 5, "hidden_size": 7, "proj_size": 3, "num_layers": 2},
    {"type": "GRU", "input_size": 5, "hidden_size": 7, "bias": False},
    {"type": "RNN", "input_size": 5, "hidden_size": 7},
    {"type": "LSTMCell", "input_size": 5, "hidden_size": 7},
    {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2},
    {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2, "kdim": 3, "vdim": 5, "add_bias_kv": True},
    {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "dim_feedforward": 16},
    {"type": "TransformerDecoderLayer", "d_model": 8, "nhead": 2, "dim_feedforward": 16},
    {"type": "TransformerEncoder", "num_layers": 3, "norm": {"type": "LayerNorm", "normalized_shape": 8},
     "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "dim_feedforward": 16}},
    {"type": "Transformer", "d_model": 8, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 2,
     "dim_feedforward": 16},
    {"type": "ReLU"},
])
def test_parameter_estimate_is_exact(layer):
    spec = validate_spec(spec_of({"layers": [layer]}))
    assert estimate_parameters(spec) == sum(p.numel() for p in build_model(spec).parameters())


def test_parameter_limit_is_checked_before_allocating():
    huge = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 1 << 20},
                       {"type": "Linear", "in_features": 1 << 20, "out_features": 1 << 20}]}
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(huge)))
    assert (e.value.code, e.value.param) == ("limit_exceeded", "model") and "max_parameters" in e.value.message
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(MLP)), limits=SpecLimits(max_parameters=1000))
    assert e.value.code == "limit_exceeded"


# ---- the dry build -------------------------------------------------------------------------------

def test_dry_build_reports_figures():
    spec = validate_spec({**spec_of(MLP), "scheduler": {"type": "CosineAnnealingLR"}, "training": {"epochs": 4}})
    r = dry_build(spec)
    assert r.parameters == r.trainable_parameters == 64 * 32 + 32 + 32 * 10 + 10
    assert r.forward_flops_per_sample == 2 * (64 * 32 + 32 * 10)
    assert r.flops_per_step == 3 * r.forward_flops_per_sample * 16
    assert r.memory["parameters"] == r.memory["gradients"] == 4 * r.parameters
    assert r.memory["optimizer_state"] == 2 * r.memory["parameters"]   # Adam: exp_avg, exp_avg_sq
    # activations: Flatten 64 + Linear 32 + ReLU 32 + Linear 10 floats, input 64 floats, label 1 int64, per sample
    assert r.memory["activations"] == 16 * ((64 + 32 + 32 + 10 + 64) * 4 + 8)
    assert r.memory["total"] == sum(v for k, v in r.memory.items() if k != "total")
    assert r.output_shape == [10]
    assert r.steps_per_epoch == 90 and r.total_steps == 360   # 1438 training samples of digits / 16
    assert r.spec["scheduler"]["T_max"] == 4 and r.spec["data"]["standardize"] is True
    assert r.spec["data"]["layout"] == "flat"
    assert r.dataset["n_classes"] == 10 and r.dataset["input_shape"] == [64]
    again = dry_build(validate_spec(r.spec))     # the normalised spec is a valid spec
    assert again.spec == r.spec and again.parameters == r.parameters
    assert r.to_dict()["memory"] == r.memory


def test_dry_build_counts_conv_rnn_and_attention_flops():
    r = dry_build(validate_spec(spec_of(CNN, layout="image")))
    conv = 2 * 1 * 9 * 8 * 8 * 8
    assert r.forward_flops_per_sample == conv + 2 * 128 * 10
    r = dry_build(validate_spec(spec_of(CHAR_LSTM, dataset="text:tinyshakespeare", seq_len=10)))
    lstm_weights = 4 * 24 * (16 + 24) + 4 * 24 * (24 + 24)
    assert r.forward_flops_per_sample == 10 * (2 * lstm_weights + 2 * 24 * 62)
    r = dry_build(validate_spec(spec_of(CHAR_TRANSFORMER, dataset="text:tinyshakespeare", seq_len=12)))
    e, length, ff = 16, 12, 32
    attention = 2 * e * 3 * e * length + 4 * length * length * e + 2 * e * e * length
    per_layer = attention + 2 * (2 * e * ff * length)
    assert r.forward_flops_per_sample == 2 * per_layer + 2 * e * 62 * length
    assert r.memory["activations"] > 0


def test_dry_build_memory_scales_with_batch_size():
    small = dry_build(validate_spec(spec_of(MLP, batch_size=8)))
    big = dry_build(validate_spec(spec_of(MLP, batch_size=64)))
    assert big.memory["activations"] == 8 * small.memory["activations"]
    assert big.memory["parameters"] == small.memory["parameters"]


@pytest.mark.parametrize("name,args", [("SGD", {}), ("SGD", {"momentum": 0.9}), ("Adam", {}),
                                       ("Adam", {"amsgrad": True}), ("AdamW", {}), ("Adamax", {}), ("NAdam", {}),
                                       ("RAdam", {}), ("RMSprop", {}), ("RMSprop", {"momentum": 0.5, "centered": True}),
                                       ("Adagrad", {})])
def test_optimizer_state_factor_matches_a_real_step(name, args):
    spec = validate_spec({**spec_of(MLP), "optimizer": {"type": name, **args}})
    model = build_model(spec)
    opt = build_optimizer(spec, model)
    model(engine.randn(4, 64)).sum().backward()
    opt.step()
    params = list(model.parameters())
    sized = sum(v.numel() for st in opt.state.values() for v in st.values()
                if isinstance(v, engine.Tensor) and v.numel() > 1)
    assert sized == optimizer_state_factor(spec) * sum(p.numel() for p in params)


def test_dry_build_names_the_layer_and_the_shapes():
    bad = copy.deepcopy(MLP)
    bad["layers"][1]["in_features"] = 63
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(bad)))
    err = e.value
    assert (err.code, err.param, err.http_status) == ("shape_mismatch", "model.layers[1]", 422)
    assert "Linear" in err.message and "in_features=63" in err.message
    assert "[2, 64]" in err.message and "model.layers[0] (Flatten)" in err.message


def test_dry_build_conv_on_flat_digits_hints_layout():
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(CNN)))
    assert e.value.param == "model.layers[0]" and "layout: image" in e.value.message
    assert "[64] per sample" in e.value.message


def test_dry_build_graph_error_names_the_node():
    bad = copy.deepcopy(RESIDUAL)
    bad["nodes"]["fc_mid"]["out_features"] = 31
    bad["nodes"]["norm"]["normalized_shape"] = 31
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(bad)))
    assert e.value.param == "model.nodes.skip" and "[2, 32] and [2, 31]" in e.value.message


def test_dry_build_output_must_fit_the_targets():
    wrong = copy.deepcopy(MLP)
    wrong["layers"][3]["out_features"] = 5
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(wrong)))
    assert (e.value.code, e.value.param) == ("shape_mismatch", "model.layers[3]") and "10" in e.value.message
    reg = {"layers": [{"type": "Linear", "in_features": 10, "out_features": 2}]}
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(reg, dataset="diabetes", loss="MSELoss")))
    assert e.value.code == "shape_mismatch" and "[1]" in e.value.message
    lm = copy.deepcopy(CHAR_LSTM)
    lm["layers"][2]["out_features"] = 61
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(lm, dataset="text:tinyshakespeare")))
    assert e.value.param == "model.layers[2]" and "vocabulary" in e.value.message


def test_dry_build_loss_must_fit_the_task():
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(MLP, loss="MSELoss")))
    assert (e.value.code, e.value.param) == ("incompatible", "loss.type")
    binary = {"layers": [{"type": "Linear", "in_features": 30, "out_features": 1}]}
    r = dry_build(validate_spec(spec_of(binary, dataset="breast_cancer", loss="BCEWithLogitsLoss")))
    assert r.output_shape == [1]
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(MLP, loss="BCEWithLogitsLoss")))   # 10 classes
    assert e.value.code == "incompatible"
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(MLP, loss="KLDivLoss")))
    assert e.value.code == "incompatible"


def test_dry_build_sequence_regression_and_unknown_dataset():
    seq = {"layers": [{"type": "GRU", "input_size": 1, "hidden_size": 8, "batch_first": True},
                      {"type": "Linear", "in_features": 8, "out_features": 1}]}
    r = dry_build(validate_spec(spec_of(seq, dataset="sine_sequences", loss="MSELoss", seq_len=16)))
    assert r.output_shape == [16, 1] and r.spec["data"]["seq_len"] == 16 and r.spec["data"]["standardize"] is False
    with pytest.raises(SpecError) as e:
        dry_build(validate_spec(spec_of(MLP, dataset="mnist")))
    assert (e.value.code, e.value.param) == ("unknown_dataset", "data.dataset")


def test_dry_build_takes_a_dataset_info_and_keeps_the_rng():
    spec = validate_spec(spec_of(MLP))
    info = describe_dataset(spec.data)
    engine.manual_seed(123)
    before = engine.rand(3).numpy()
    engine.manual_seed(123)
    r = dry_build(spec, info)
    after = engine.rand(3).numpy()
    np.testing.assert_array_equal(before, after)
    assert r.dataset["name"] == "digits"


def test_dry_build_collects_warnings():
    rnn = {"layers": [{"type": "LSTM", "input_size": 1, "hidden_size": 4, "dropout": 0.5, "batch_first": True},
                      {"type": "Linear", "in_features": 4, "out_features": 1}]}
    r = dry_build(validate_spec(spec_of(rnn, dataset="sine_sequences", loss="MSELoss")))
    assert r.warnings and "model.layers[0]" in r.warnings[0] and "num_layers" in r.warnings[0]


def test_dry_build_drop_last_with_too_few_samples():
    spec = validate_spec(spec_of(MLP, dataset="iris", batch_size=1000, drop_last=True))
    with pytest.raises(SpecError) as e:
        dry_build(spec)
    assert e.value.param == "data.batch_size"


def test_the_pieces_train_a_model():
    """spec -> dataset -> model, loss, optimizer, scheduler -> a few epochs: iris is learned."""
    from engine.utils.data import DataLoader
    from workers.build import steps_per_epoch
    from workers.datasets import load_dataset
    spec = validate_spec({"model": {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16},
                                               {"type": "Tanh"}, {"type": "Linear", "in_features": 16,
                                                                  "out_features": 3}]},
                          "data": {"dataset": "iris", "batch_size": 16}, "loss": {"type": "CrossEntropyLoss"},
                          "optimizer": {"type": "Adam", "lr": 0.05},
                          "scheduler": {"type": "StepLR", "step_size": 10, "gamma": 0.5},
                          "training": {"epochs": 30, "seed": 1}})
    data = load_dataset(spec.data, seed=spec.training.seed)
    engine.manual_seed(spec.training.seed)
    model, loss_fn = build_model(spec), build_loss(spec)
    opt = build_optimizer(spec, model)
    n = steps_per_epoch(data.info.n_train, spec.data.batch_size, spec.data.drop_last)
    sched = build_scheduler(spec, opt, n)
    loader = DataLoader(data.train, batch_size=spec.data.batch_size, shuffle=True,
                        generator=engine.Generator().manual_seed(spec.training.seed))
    for _ in range(spec.training.epochs):
        for x, y in loader:
            opt.zero_grad()
            compute_loss(loss_fn, model(x), y).backward()
            opt.step()
        sched.step()
    x, y = data.val.tensors
    with engine.no_grad():
        correct, total = count_correct(model(x), y, loss_fn)
    assert total == 30 and correct >= 27
