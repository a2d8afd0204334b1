"""engine.optim against torch.optim: the same parameters, step by step, on the same small problem; state
names and values; state_dict round trips that resume exactly; LBFGS on Rosenbrock; errors."""
import copy
import re
import warnings

import numpy as np
import pytest

import engine
from engine import optim

torch = pytest.importorskip("torch")

F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=2e-5, atol=2e-6)


# ---- a small problem, written once for both libraries ---------------------------------------------

def _arrays(dtype=np.float64, seed=0):
    r = np.random.default_rng(seed)
    params = [r.standard_normal((3, 4)), r.standard_normal(3), r.standard_normal((2, 2))]
    data = [r.standard_normal((5, 4)), r.standard_normal((5, 3))]
    return [a.astype(dtype) for a in params], [a.astype(dtype) for a in data]


def _loss(lib, params, data):
    """A smooth loss of the first two parameters; the third never gets a gradient."""
    W, b, _unused = params
    x, y = data
    h = lib.tanh(x @ W.t() + b)
    return ((h - y) ** 2).sum() + 0.1 * (W ** 4).sum()


def _make(dtype=np.float64, seed=0):
    params, data = _arrays(dtype, seed)
    e = [engine.tensor(a.copy(), requires_grad=True) for a in params]
    t = [torch.tensor(a.copy(), requires_grad=True) for a in params]
    return (e, [engine.tensor(a) for a in data]), (t, [torch.tensor(a) for a in data])


def _closure(lib, opt, params, data):
    def closure():
        opt.zero_grad()
        loss = _loss(lib, params, data)
        loss.backward()
        return loss
    return closure


def _assert_params(e_params, t_params, tol, step):
    for i, (ep, tp) in enumerate(zip(e_params, t_params)):
        np.testing.assert_allclose(ep.detach().numpy(), tp.detach().numpy(), **tol,
                                   err_msg=f"parameter {i} after step {step}")


def _assert_state(e_opt, t_opt, tol):
    """Same state entries (PyTorch's names) with the same values, through state_dict()."""
    es, ts = e_opt.state_dict()["state"], t_opt.state_dict()["state"]
    assert es.keys() == ts.keys()
    for k in ts:
        assert es[k].keys() == ts[k].keys(), f"state of parameter {k}"
        for name, tv in ts[k].items():
            ev = es[k][name]
            if isinstance(tv, torch.Tensor):
                assert isinstance(ev, engine.Tensor)
                if name in ("step", "mu_product"):  # scalars kept on the CPU in the scalar dtype
                    assert str(ev.dtype).split(".")[-1] == str(tv.dtype).split(".")[-1]
                np.testing.assert_allclose(ev.numpy(), tv.numpy(), **tol, err_msg=f"state {k}.{name}")
            else:
                assert ev == tv


CASES = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    ("SGD", dict(lr=0.01, momentum=0.5, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.05, betas=(0.8, 0.99), amsgrad=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, maximize=True, eps=1e-6)),
    ("Adam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, amsgrad=True, weight_decay=0.3, maximize=True)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, centered=True, eps=1e-4)),
    ("RMSprop", dict(lr=0.005, momentum=0.5, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6)),
    ("Adagrad", dict(lr=0.05, maximize=True)),
    ("Adamax", dict()),
    ("Adamax", dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)),
    ("Adamax", dict(lr=0.01, maximize=True)),
    ("NAdam", dict()),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    ("RAdam", dict()),
    ("RAdam", dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1)),
    ("RAdam", dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
]


def _ids(case):
    name, kw = case
    return name + "-" + ",".join(f"{k}={v}" for k, v in kw.items())


def _run(name, kw, steps, dtype=np.float64, tol=F64, check_state=True):
    (ep, ed), (tp, td) = _make(dtype)
    e_opt, t_opt = getattr(optim, name)(ep, **kw), getattr(torch.optim, name)(tp, **kw)
    e_closure, t_closure = _closure(engine, e_opt, ep, ed), _closure(torch, t_opt, tp, td)
    for step in range(1, steps + 1):
        e_loss = e_opt.step(e_closure)
        t_loss = t_opt.step(t_closure)
        np.testing.assert_allclose(e_loss.item(), t_loss.item(), **tol)
        _assert_params(ep, tp, tol, step)
    if check_state:
        _assert_state(e_opt, t_opt, tol)
    return ep, tp


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch_float64(case):
    name, kw = case
    ep, _ = _run(name, kw, steps=20)
    initial, _ = _arrays()
    assert not np.allclose(ep[0].detach().numpy(), initial[0])  # it did move
    np.testing.assert_array_equal(ep[2].detach().numpy(), initial[2])  # grad None: skipped


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam"])
def test_matches_torch_float32(name):
    kw = dict(lr=0.01, momentum=0.9) if name in ("SGD", "RMSprop") else dict(lr=0.01)
    _run(name, kw, steps=10, dtype=np.float32, tol=F32)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "NAdam"])
def test_param_groups_and_lr_changes_between_steps(name):
    """Per-group options, and lr written into the groups between steps (as schedulers do)."""
    (ep, ed), (tp, td) = _make()
    extra = {"momentum": 0.9} if name in ("SGD", "RMSprop") else {}
    e_opt = getattr(optim, name)([{"params": [ep[0]], "lr": 0.03}, {"params": ep[1:], "weight_decay": 0.2}],
                                 lr=0.01, **extra)
    t_opt = getattr(torch.optim, name)([{"params": [tp[0]], "lr": 0.03}, {"params": tp[1:], "weight_decay": 0.2}],
                                       lr=0.01, **extra)
    assert e_opt.param_groups[1]["lr"] == 0.01 and e_opt.param_groups[0]["weight_decay"] == 0
    for step in range(1, 11):
        for opt in (e_opt, t_opt):
            opt.param_groups[0]["lr"] *= 0.9
            opt.param_groups[1]["lr"] = 0.01 * step
        e_opt.step(_closure(engine, e_opt, ep, ed))
        t_opt.step(_closure(torch, t_opt, tp, td))
        _assert_params(ep, tp, F64, step)


@pytest.mark.parametrize("name", ["SGD", "AdamW"])
def test_training_an_nn_module_matches_torch(name):
    """model.parameters() of an engine.nn model, loaded with torch's initial weights, trains the same."""
    e_model = engine.nn.Sequential(engine.nn.Linear(4, 8), engine.nn.Tanh(), engine.nn.Linear(8, 2)).double()
    t_model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    e_model.load_state_dict({k: engine.tensor(v.detach().numpy().copy()) for k, v in t_model.state_dict().items()})
    kw = dict(lr=0.05, momentum=0.9, nesterov=True) if name == "SGD" else dict(lr=0.01)
    e_opt = getattr(optim, name)(e_model.parameters(), **kw)
    t_opt = getattr(torch.optim, name)(t_model.parameters(), **kw)
    _, (x, y) = _arrays()
    y = y[:, :2]
    for step in range(1, 21):
        for lib, model, opt in ((engine, e_model, e_opt), (torch, t_model, t_opt)):
            opt.zero_grad()
            lib.nn.functional.mse_loss(model(lib.tensor(x)), lib.tensor(y)).backward()
            opt.step()
        _assert_params(list(e_model.parameters()), list(t_model.parameters()), F64, step)


def test_add_param_group():
    (ep, ed), (tp, td) = _make()
    e_opt, t_opt = optim.Adam([ep[0]], lr=0.01), torch.optim.Adam([tp[0]], lr=0.01)
    for step in range(1, 11):
        if step == 4:
            e_opt.add_param_group({"params": [ep[1]], "lr": 0.05, "amsgrad": True})
            t_opt.add_param_group({"params": [tp[1]], "lr": 0.05, "amsgrad": True})
        e_opt.step(_closure(engine, e_opt, ep, ed))
        t_opt.step(_closure(torch, t_opt, tp, td))
        _assert_params(ep, tp, F64, step)
    _assert_state(e_opt, t_opt, F64)
    assert e_opt.param_groups[1]["betas"] == (0.9, 0.999)


# ---- state_dict -----------------------------------------------------------------------------------

RESUME_CASES = [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.05)),
    ("RMSprop", dict(momentum=0.5, centered=True)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01)),
    ("Adamax", dict(lr=0.05)),
    ("NAdam", dict(lr=0.05)),
    ("RAdam", dict(lr=0.05)),
    ("LBFGS", dict(max_iter=3, history_size=4)),
    ("LBFGS", dict(max_iter=3, history_size=4, line_search_fn="strong_wolfe")),
]


@pytest.mark.parametrize("case", RESUME_CASES, ids=_ids)
def test_state_dict_resumes_exactly(case):
    """Train N steps, save, build a fresh optimizer over fresh copies, load, continue: the same
    parameters, bit for bit, as an uninterrupted run."""
    name, kw = case
    (ep, ed), _ = _make()
    opt = getattr(optim, name)(ep, **kw)
    for _ in range(6):
        opt.step(_closure(engine, opt, ep, ed))
    saved = opt.state_dict()
    saved_copy = copy.deepcopy(saved)

    resumed_params = [engine.tensor(p.detach().numpy().copy(), requires_grad=True) for p in ep]
    resumed = getattr(optim, name)(resumed_params, **kw)
    resumed.load_state_dict(saved)
    for _ in range(6):
        opt.step(_closure(engine, opt, ep, ed))
        resumed.step(_closure(engine, resumed, resumed_params, ed))
    for a, b in zip(ep, resumed_params):
        np.testing.assert_array_equal(a.detach().numpy(), b.detach().numpy())

    # the loaded optimizer copied the state: the saved dict still holds the values it was saved with
    resumed.step(_closure(engine, resumed, resumed_params, ed))
    resumed_sd = resumed.state_dict()
    for k, entry in saved_copy["state"].items():
        assert resumed_sd["state"][k] is not saved["state"][k]
        for name_, value in entry.items():
            if isinstance(value, engine.Tensor) and name_ != "step":
                assert value._data is not resumed_sd["state"][k][name_]._data


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "SGD" or "momentum" in c[1]][::3], ids=_ids)
def test_state_dict_structure_as_torch(case):
    name, kw = case
    (ep, ed), (tp, td) = _make()
    e_opt, t_opt = getattr(optim, name)(ep, **kw), getattr(torch.optim, name)(tp, **kw)
    for _ in range(2):
        e_opt.step(_closure(engine, e_opt, ep, ed))
        t_opt.step(_closure(torch, t_opt, tp, td))
    es, ts = e_opt.state_dict(), t_opt.state_dict()
    assert es.keys() == ts.keys() == {"state", "param_groups"}
    assert [g["params"] for g in es["param_groups"]] == [g["params"] for g in ts["param_groups"]]
    for eg, tg in zip(es["param_groups"], ts["param_groups"]):
        assert set(eg) <= set(tg)  # torch adds foreach/fused/capturable/differentiable
        assert {k: eg[k] for k in eg} == {k: tg[k] for k in eg}
    _assert_state(e_opt, t_opt, F64)


def test_load_state_dict_checks_groups():
    (ep, _), _ = _make()
    sd = optim.SGD(ep, lr=0.1).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": ep[:1]}, {"params": ep[1:]}], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.SGD(ep[:2], lr=0.1).load_state_dict(sd)


def test_load_state_dict_with_string_keys():
    """A state_dict that went through JSON (its indices became strings) still loads onto the parameters."""
    (ep, ed), _ = _make()
    opt = optim.SGD(ep, lr=0.1, momentum=0.9)
    opt.step(_closure(engine, opt, ep, ed))
    sd = opt.state_dict()
    sd = {"state": {str(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}
    other = optim.SGD(ep, lr=0.1, momentum=0.9)
    other.load_state_dict(sd)
    assert sorted(other.state_dict()["state"]) == [0, 1]
    assert "momentum_buffer" in other.state[ep[0]]


def test_load_state_dict_restores_hyperparameters_and_dtype():
    (ep, ed), _ = _make()
    opt = optim.Adam(ep, lr=0.05)
    opt.step(_closure(engine, opt, ep, ed))
    sd = opt.state_dict()
    p32 = [engine.tensor(p.detach().numpy().astype(np.float32), requires_grad=True) for p in ep]
    other = optim.Adam(p32, lr=1.0)
    other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.05
    assert other.param_groups[0]["params"][0] is p32[0]
    st = other.state[p32[0]]
    assert st["exp_avg"].dtype == engine.float32  # moment estimates follow the parameter
    assert st["step"].dtype == sd["state"][0]["step"].dtype and float(st["step"]) == 1.0


# ---- LBFGS ------------------------------------------------------------------------------------------

def _rosenbrock(lib, x):
    return ((1 - x[:-1]) ** 2).sum() + 100 * ((x[1:] - x[:-1] ** 2) ** 2).sum()


@pytest.mark.parametrize("kw", [dict(lr=0.5, max_iter=5), dict(lr=1, max_iter=4, history_size=3),
                                dict(line_search_fn="strong_wolfe", max_iter=6),
                                dict(line_search_fn="strong_wolfe", history_size=2, max_iter=6, lr=0.8)],
                         ids=["plain", "short-history", "strong_wolfe", "strong_wolfe-short-history"])
def test_lbfgs_matches_torch_on_rosenbrock(kw):
    start = np.array([-1.2, 1.0, -0.5, 0.8, 1.3])
    ex, tx = engine.tensor(start.copy(), requires_grad=True), torch.tensor(start.copy(), requires_grad=True)
    e_opt, t_opt = optim.LBFGS([ex], **kw), torch.optim.LBFGS([tx], **kw)

    def closure(lib, opt, x):
        def f():
            opt.zero_grad()
            loss = _rosenbrock(lib, x)
            loss.backward()
            return loss
        return f

    # 6 calls (about 40 iterations): further on, near the minimum, rounding differences grow past 1e-9
    for step in range(1, 7):
        e_loss = e_opt.step(closure(engine, e_opt, ex))
        t_loss = t_opt.step(closure(torch, t_opt, tx))
        # near the minimum the loss is tiny: compare it on the scale of where it started (~1e2)
        np.testing.assert_allclose(e_loss.item(), t_loss.item(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ex.detach().numpy(), tx.detach().numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=f"after step {step}")
        es, ts = e_opt.state[ex], t_opt.state[tx]
        assert (es["func_evals"], es["n_iter"]) == (ts["func_evals"], ts["n_iter"])
        assert len(es["old_dirs"]) == len(ts["old_dirs"])
    assert float(_rosenbrock(engine, ex)) < float(_rosenbrock(engine, engine.tensor(start)))


def test_lbfgs_needs_one_group_and_a_closure():
    (ep, _), _ = _make()
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        optim.LBFGS([{"params": ep[:1]}, {"params": ep[1:]}])
    opt = optim.LBFGS(ep)
    with pytest.raises(ValueError, match="doesn't support per-parameter options"):
        opt.add_param_group({"params": [engine.zeros(2, requires_grad=True)]})
    with pytest.raises(RuntimeError, match="needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match="line_search_fn"):
        optim.LBFGS(ep, line_search_fn="armijo")


# ---- behaviour of the base class ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adamax", "NAdam", "RAdam"])
def test_step_returns_closure_loss_and_bumps_versions(name):
    (ep, ed), _ = _make()
    opt = getattr(optim, name)(ep, lr=0.01)
    versions = [p._version for p in ep]
    loss = opt.step(_closure(engine, opt, ep, ed))
    assert isinstance(loss, engine.Tensor) and loss.requires_grad  # the closure ran with grad enabled
    assert [p._version for p in ep] == [versions[0] + 1, versions[1] + 1, versions[2]]
    assert opt.step() is None


def test_step_runs_without_recording_and_keeps_grads():
    (ep, ed), _ = _make()
    opt = optim.Adam(ep, lr=0.1, weight_decay=0.1, maximize=True)
    _loss(engine, ep, ed).backward()
    grads = [p.grad.numpy().copy() for p in ep[:2]]
    opt.step()
    for p, g in zip(ep, grads):
        assert p.is_leaf and p.grad_fn is None
        np.testing.assert_array_equal(p.grad.numpy(), g)  # .grad is never modified by the update


def test_zero_grad():
    (ep, ed), _ = _make()
    opt = optim.SGD(ep, lr=0.1)
    _loss(engine, ep, ed).backward()
    grad = ep[0].grad
    opt.zero_grad(set_to_none=False)
    assert ep[0].grad is grad and not grad.numpy().any() and ep[2].grad is None
    opt.zero_grad()
    assert ep[0].grad is None and ep[1].grad is None


def test_sgd_without_momentum_keeps_no_state():
    (ep, ed), _ = _make()
    opt = optim.SGD(ep, lr=0.1)
    opt.step(_closure(engine, opt, ep, ed))
    assert opt.state_dict()["state"] == {}


def test_adagrad_state_exists_before_the_first_step():
    (ep, _), (tp, _) = _make()
    es = optim.Adagrad(ep, initial_accumulator_value=0.25).state_dict()["state"]
    ts = torch.optim.Adagrad(tp, initial_accumulator_value=0.25).state_dict()["state"]
    assert es.keys() == ts.keys() == {0, 1, 2}
    np.testing.assert_array_equal(es[1]["sum"].numpy(), ts[1]["sum"].numpy())


def test_param_group_errors():
    (ep, _), _ = _make()
    with pytest.raises(ValueError, match="optimizer got an empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="should be an iterable of Tensors or dicts"):
        optim.SGD(ep[0])
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": ep[:2]}, {"params": ep[1:]}])
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([ep[0] * 2])
    with pytest.raises(TypeError, match="optimizer can only optimize Tensors"):
        optim.SGD([np.zeros(3)])
    with pytest.raises(TypeError, match="ordering of tensors in sets"):
        optim.SGD([{"params": {ep[0]}}])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        optim.SGD([ep[0], ep[0]])
    assert any("duplicate parameters" in str(x.message) for x in w)


def test_named_parameters():
    (ep, _), (tp, _) = _make()
    e_opt = optim.SGD([("w", ep[0]), ("b", ep[1])], lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD([("w", tp[0]), ("b", tp[1])], lr=0.1, momentum=0.9)
    assert e_opt.param_groups[0]["param_names"] == t_opt.param_groups[0]["param_names"] == ["w", "b"]
    assert e_opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]


def test_repr():
    (ep, _), _ = _make()
    text = repr(optim.SGD(ep, lr=0.1))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.1\n" in text


INVALID = [
    ("SGD", dict(lr=-1.0)), ("SGD", dict(momentum=-0.5)), ("SGD", dict(weight_decay=-1e-4)),
    ("SGD", dict(nesterov=True)), ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1)),
    ("Adam", dict(lr=-1.0)), ("Adam", dict(eps=-1.0)), ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))), ("Adam", dict(weight_decay=-1.0)), ("AdamW", dict(lr=-0.1)),
    ("RMSprop", dict(lr=-1.0)), ("RMSprop", dict(eps=-1.0)), ("RMSprop", dict(momentum=-1.0)),
    ("RMSprop", dict(weight_decay=-1.0)), ("RMSprop", dict(alpha=-0.1)),
    ("Adagrad", dict(lr=-1.0)), ("Adagrad", dict(lr_decay=-1.0)), ("Adagrad", dict(weight_decay=-1.0)),
    ("Adagrad", dict(initial_accumulator_value=-1.0)), ("Adagrad", dict(eps=-1.0)),
    ("Adamax", dict(lr=-1.0)), ("Adamax", dict(betas=(0.9, 1.5))),
    ("NAdam", dict(momentum_decay=-1.0)), ("NAdam", dict(eps=-1e-3)),
    ("RAdam", dict(betas=(-0.1, 0.9))), ("RAdam", dict(weight_decay=-1.0)),
    ("LBFGS", dict(lr=-1.0)),
]


@pytest.mark.parametrize("case", INVALID, ids=_ids)
def test_invalid_hyperparameters_raise_torchs_message(case):
    name, kw = case
    (ep, _), (tp, _) = _make()
    with pytest.raises(ValueError) as expected:
        getattr(torch.optim, name)(tp, **kw)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        getattr(optim, name)(ep, **kw)


def test_invalid_lr_message():
    with pytest.raises(ValueError, match=r"^Invalid learning rate: -1.0$"):
        optim.SGD([engine.zeros(2, requires_grad=True)], lr=-1.0)


@pytest.mark.cuda
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("SGD", "Adam", "RMSprop", "NAdam")][1::2], ids=_ids)
def test_cuda_matches_cpu(case):
    name, kw = case
    (ep, ed), _ = _make()
    gp = [engine.tensor(p.detach().numpy().copy(), device="cuda", requires_grad=True) for p in ep]
    gd = [d.to("cuda") for d in ed]
    e_opt, g_opt = getattr(optim, name)(ep, **kw), getattr(optim, name)(gp, **kw)
    for _ in range(5):
        e_opt.step(_closure(engine, e_opt, ep, ed))
        g_opt.step(_closure(engine, g_opt, gp, gd))
    for a, b in zip(ep, gp):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().cpu().numpy(), rtol=1e-9, atol=1e-11)
    sd = g_opt.state_dict()
    assert sd["state"]
    for entry in sd["state"].values():  # step counters stay on the CPU, as PyTorch keeps them
        assert all(v.device.type == ("cpu" if k in ("step", "mu_product") else "cuda") for k, v in entry.items())
