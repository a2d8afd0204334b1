"""nn.Module: registration through attributes, traversal, modes, conversion, state_dict, repr."""
import copy
from collections import OrderedDict

import numpy as np
import pytest

import engine
import engine.nn as nn

torch = pytest.importorskip("torch")


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.register_buffer("steps", engine.zeros((), dtype=engine.int64))
        self.register_buffer("scratch", engine.zeros(2), persistent=False)
        self.scale = nn.Parameter(engine.ones(3))

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


class TorchBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.act = torch.nn.ReLU()
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)
        self.scale = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.act(self.fc(x)) * self.scale


def to_torch_sd(sd):
    return OrderedDict((k, torch.tensor(v.numpy())) for k, v in sd.items())


def test_registration_and_state_dict_keys_match_torch():
    m, t = nn.Sequential(Block(), nn.Linear(3, 2)), torch.nn.Sequential(TorchBlock(), torch.nn.Linear(3, 2))
    assert list(m.state_dict()) == list(t.state_dict())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    assert [n for n, _ in m.named_buffers()] == [n for n, _ in t.named_buffers()]
    assert [n for n, _ in m.named_modules()] == [n for n, _ in t.named_modules()]
    assert len(list(m.children())) == 2
    assert all(isinstance(p, nn.Parameter) for p in m.parameters())


def test_state_dict_moves_between_engine_and_torch():
    m, t = Block(), TorchBlock()
    t.load_state_dict(to_torch_sd(m.state_dict()))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    # float32 rounding: an output near zero (the weights are random, the suite's order changes them) can
    # differ by an ulp of the larger terms that cancelled into it, so an absolute floor too
    np.testing.assert_allclose(m(engine.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6, atol=1e-7)
    m2 = Block()
    m2.load_state_dict({k: engine.tensor(v.numpy()) for k, v in t.state_dict().items()})
    np.testing.assert_allclose(m2(engine.tensor(x)).detach().numpy(), t(torch.tensor(x)).detach().numpy(),
                               rtol=1e-6)


def test_state_dict_shares_storage_and_is_detached():
    m = nn.Linear(2, 2)
    sd = m.state_dict()
    assert not sd["weight"].requires_grad
    with engine.no_grad():
        sd["weight"].fill_(3.0)
    assert m.weight.detach().numpy().max() == 3.0
    assert m.state_dict(keep_vars=True)["weight"] is m.weight


def test_load_state_dict_errors_name_keys_and_shapes():
    m = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "bias"'):
        m.load_state_dict({"weight": engine.zeros(2, 3)})
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "extra"'):
        m.load_state_dict({"weight": engine.zeros(2, 3), "bias": engine.zeros(2), "extra": engine.zeros(1)})
    with pytest.raises(RuntimeError, match=r"size mismatch for weight: copying a param with shape \[3, 3\]"):
        m.load_state_dict({"weight": engine.zeros(3, 3), "bias": engine.zeros(2)})
    result = m.load_state_dict({"weight": engine.zeros(2, 3)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == []
    assert float(m.weight.abs().sum()) == 0.0


def test_attribute_assignment_rules():
    m = Block()
    m.fc = nn.Linear(4, 3, bias=False)  # replacing a submodule
    assert "fc.bias" not in m.state_dict()
    m.plain = engine.zeros(2)  # a plain tensor is not a buffer
    assert "plain" not in m.state_dict()
    with pytest.raises(TypeError, match="cannot assign"):
        m.scale = engine.ones(3)  # a parameter must stay a Parameter
    m.scale = None
    assert "scale" not in m.state_dict()
    m.steps = engine.ones((), dtype=engine.int64)  # buffers may be replaced by tensors
    assert m.state_dict()["steps"].item() == 1
    del m.fc
    assert not hasattr(m, "fc")
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        m.missing


def test_train_eval_zero_grad_requires_grad_apply():
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    assert m.training and m[1].training
    m.eval()
    assert not m.training and not m[1].training
    m.train()
    m(engine.randn(3, 2)).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())
    names = []
    m.apply(lambda mod: names.append(type(mod).__name__))
    assert names == ["Linear", "Dropout", "Sequential"]


def test_to_double_keeps_parameter_identity_and_converts_buffers():
    m = Block()
    w = m.fc.weight
    m.double()
    assert m.fc.weight is w and w.dtype == engine.float64
    assert m.steps.dtype == engine.int64  # integer buffers are left alone
    m.to(engine.float32)
    assert w.dtype == engine.float32
    with pytest.raises(TypeError, match="floating point"):
        m.to(engine.int64)


def test_repr_matches_torch():
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    t = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                            torch.nn.Linear(128, 10))
    assert repr(m) == repr(t)
    assert repr(nn.Embedding(10, 3, padding_idx=0)) == repr(torch.nn.Embedding(10, 3, padding_idx=0))
    assert repr(nn.GELU(approximate="tanh")) == repr(torch.nn.GELU(approximate="tanh"))
    assert repr(nn.LeakyReLU(0.2)) == repr(torch.nn.LeakyReLU(0.2))


def test_containers():
    seq = nn.Sequential(OrderedDict([("a", nn.Linear(2, 3)), ("b", nn.Tanh())]))
    assert isinstance(seq[0], nn.Linear) and isinstance(seq[-1], nn.Tanh) and len(seq) == 2
    assert isinstance(seq[:1], nn.Sequential) and len(seq[:1]) == 1
    seq.append(nn.Linear(3, 1))
    assert seq(engine.randn(4, 2)).shape == (4, 1)
    ml = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    ml.append(nn.ReLU())
    assert len(ml) == 4 and len(list(ml.parameters())) == 6
    md = nn.ModuleDict({"enc": nn.Linear(2, 2)})
    md["dec"] = nn.Linear(2, 1)
    assert list(md.keys()) == ["enc", "dec"] and "dec.weight" in md.state_dict()
    pl = nn.ParameterList([nn.Parameter(engine.ones(2)), engine.zeros(3)])
    assert [tuple(p.shape) for p in pl] == [(2,), (3,)]


def test_shared_parameters_counted_once():
    lin = nn.Linear(2, 2)
    m = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(m.parameters())) == 2
    assert list(m.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_deepcopy_gives_independent_parameters():
    m = nn.Linear(2, 2)
    c = copy.deepcopy(m)
    with engine.no_grad():
        c.weight.fill_(0.0)
    assert float(m.weight.abs().sum()) > 0
    assert isinstance(c.weight, nn.Parameter)


def test_forward_hooks():
    m = nn.Linear(2, 2)
    seen = []
    h = m.register_forward_hook(lambda mod, args, out: seen.append(tuple(out.shape)))
    m(engine.randn(3, 2))
    h.remove()
    m(engine.randn(3, 2))
    assert seen == [(3, 2)]


def test_missing_forward_and_super_init():
    class NoForward(nn.Module):
        pass

    with pytest.raises(NotImplementedError, match="forward"):
        NoForward()(engine.zeros(1))

    class NoInit(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first"):
        NoInit()
