"""Loss functions and modules against torch: values and gradients (input and target) for every
reduction, weights, ignore_index, label smoothing, pos_weight, log_target; double backward; errors."""
import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = {np.float64: dict(rtol=1e-10, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-6)}
REDUCTIONS = ["mean", "sum", "none"]


def arr(*shape, seed=0, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def probs(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).uniform(0.05, 0.95, shape).astype(dtype)


def labels(n_classes, *shape, seed=0):
    return np.random.default_rng(seed).integers(0, n_classes, shape)


def close(e, t, dtype=np.float64, what=""):
    assert tuple(e.shape) == tuple(t.shape), f"{what}: shape {tuple(e.shape)} != torch {tuple(t.shape)}"
    assert e.dtype.name == str(t.dtype)[6:], f"{what}: dtype {e.dtype.name} != torch {t.dtype}"
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), err_msg=what, equal_nan=True, **TOL[dtype])


def compare(fn, *args, grad=(), dtype=np.float64, seed=7):
    """``fn(lib, *tensors)`` with engine and torch: same value, and the same gradients, for the upstream
    gradient of a random linear function of the output, for the arguments at positions ``grad``."""
    ins = [(engine.tensor(a, requires_grad=i in grad), torch.tensor(a, requires_grad=i in grad))
           if isinstance(a, np.ndarray) else (a, a) for i, a in enumerate(args)]
    out = fn(engine, *(e for e, _ in ins))
    tout = fn(torch, *(t for _, t in ins))
    close(out, tout, dtype, "loss")
    if grad:
        g = arr(*tout.shape, seed=seed, dtype=dtype)
        out.backward(engine.tensor(g))
        tout.backward(torch.tensor(g))
        for i in grad:
            close(ins[i][0].grad, ins[i][1].grad, dtype, f"grad of argument {i}")
    return out


def fn_of(name, **kw):
    return lambda lib, *a: getattr(lib.nn.functional, name)(*a, **kw)


# ---- regression --------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kw", [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", {}),
                                     ("smooth_l1_loss", dict(beta=0.5)), ("smooth_l1_loss", dict(beta=0.0)),
                                     ("huber_loss", {}), ("huber_loss", dict(delta=2.5))])
def test_regression_losses_match_torch(name, kw, reduction, dtype):
    x, t = arr(4, 5, dtype=dtype, scale=2), arr(4, 5, seed=1, dtype=dtype, scale=2)
    compare(fn_of(name, reduction=reduction, **kw), x, t, grad=(0, 1), dtype=dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_regression_losses_with_weight_match_torch(name, reduction):
    x, t, w = arr(3, 4), arr(3, 4, seed=1), probs(3, 4, seed=2)
    f = getattr(F, name), getattr(TF, name)
    compare(lambda lib, x, t, w: f[lib is torch](x, t, reduction=reduction, weight=w), x, t, w, grad=(0, 1, 2))


def test_regression_losses_gradcheck():
    for name, kw in [("mse_loss", {}), ("l1_loss", {}), ("smooth_l1_loss", dict(beta=0.7)),
                     ("huber_loss", dict(delta=0.7))]:
        x = engine.tensor(arr(2, 3, scale=2), requires_grad=True)
        t = engine.tensor(arr(2, 3, seed=1, scale=2), requires_grad=True)
        f = getattr(F, name)
        assert gradcheck(lambda x, t: f(x, t, reduction="none", **kw), (x, t)), name
        assert gradgradcheck(lambda x, t: f(x, t, **kw), (x, t)), name


def test_regression_target_shape_mismatch_is_an_error():
    x = engine.zeros(8, 1)
    for loss in (nn.MSELoss(), nn.L1Loss(), nn.SmoothL1Loss(), nn.HuberLoss()):
        with pytest.raises(ValueError, match=rf"^{type(loss).__name__}: target of shape \(8,\) does not match the "
                                             r"input's shape \(8, 1\)"):
            loss(x, engine.zeros(8))
    with pytest.raises(ValueError, match=r"smooth_l1_loss: beta must be >= 0, got -1"):
        F.smooth_l1_loss(x, x, beta=-1)
    with pytest.raises(ValueError, match=r"huber_loss: delta must be > 0, got 0"):
        F.huber_loss(x, x, delta=0)


def test_mixed_dtypes_promote_like_torch():
    x, t = arr(3, dtype=np.float32), labels(4, 3)
    compare(fn_of("mse_loss"), x, t, grad=(0,), dtype=np.float32)
    compare(fn_of("l1_loss"), x, arr(3, seed=1), grad=(0,))


# ---- cross entropy with class indices ----------------------------------------------------------------

def ce_case(shape, seed=0, ignore=()):
    """Logits of ``shape`` (N, C, ...) and class indices for them, some set to -100."""
    x = arr(*shape, seed=seed, scale=2)
    t = labels(shape[1], shape[0], *shape[2:], seed=seed + 1)
    t.reshape(-1)[list(ignore)] = -100
    return x, t


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.25])
@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 2, 3)])
def test_cross_entropy_indices_match_torch(shape, smoothing, weighted, reduction):
    x, t = ce_case(shape, ignore=(1, 4))
    w = probs(shape[1], seed=5) if weighted else None
    compare(lambda lib, x, t, w: lib.nn.functional.cross_entropy(x, t, w, reduction=reduction,
                                                                label_smoothing=smoothing), x, t, w, grad=(0,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_float32_and_other_ignore_index(reduction):
    x, t = ce_case((8, 10))
    x = x.astype(np.float32)
    t[3] = 2
    compare(fn_of("cross_entropy", ignore_index=2, reduction=reduction, label_smoothing=0.1), x, t, grad=(0,),
            dtype=np.float32)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_unbatched_matches_torch(reduction):
    compare(fn_of("cross_entropy", reduction=reduction, label_smoothing=0.1), arr(5), np.array(3), grad=(0,))


def test_cross_entropy_all_ignored_mean_is_nan_like_torch():
    x, t = ce_case((3, 4), ignore=(0, 1, 2))
    assert np.isnan(compare(fn_of("cross_entropy"), x, t).item())


def test_cross_entropy_large_logits_are_stable():
    x = np.array([[1000.0, -1000.0, 0.0], [-5e3, 5e3, 4999.0]])
    compare(fn_of("cross_entropy", label_smoothing=0.2), x, np.array([0, 2]), grad=(0,))


def test_cross_entropy_is_one_fused_node():
    x = engine.tensor(arr(4, 3), requires_grad=True)
    loss = F.cross_entropy(x, engine.tensor(labels(3, 4)), reduction="none")
    assert type(loss.grad_fn).__name__ == "CrossEntropy"
    assert loss.grad_fn.next_functions[0][0].name() == "AccumulateGrad"


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_gradcheck_and_double_backward(weighted, smoothing):
    x, t = ce_case((3, 4, 2), ignore=(2,))
    xe, te = engine.tensor(x, requires_grad=True), engine.tensor(t)
    w = engine.tensor(probs(4, seed=3)) if weighted else None
    f = lambda x: F.cross_entropy(x, te, w, reduction="none", label_smoothing=smoothing)  # noqa: E731
    assert gradcheck(f, (xe,))
    assert gradgradcheck(f, (xe,))


def test_cross_entropy_double_backward_matches_torch():
    x, t = ce_case((4, 5), ignore=(1,))
    w = probs(5, seed=2)
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (eg,) = engine.autograd.grad(F.cross_entropy(ex, engine.tensor(t), engine.tensor(w), label_smoothing=0.1),
                                 [ex], create_graph=True)
    (tg,) = torch.autograd.grad(TF.cross_entropy(tx, torch.tensor(t), torch.tensor(w), label_smoothing=0.1),
                                [tx], create_graph=True)
    close(eg, tg)
    (eg ** 2).sum().backward(), (tg ** 2).sum().backward()
    close(ex.grad, tx.grad)


def test_cross_entropy_graph_is_freed_after_backward():
    import gc
    x = engine.tensor(arr(4, 3), requires_grad=True)
    t = engine.tensor(labels(3, 4))
    gc.collect()
    F.cross_entropy(x, t, label_smoothing=0.1).backward()
    assert gc.collect() == 0


# ---- cross entropy with class probabilities ------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2), (3,)])
def test_cross_entropy_probabilities_match_torch(shape, smoothing, weighted, reduction):
    x = arr(*shape, scale=2)
    p = probs(*shape, seed=1)
    p /= p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    w = probs(3, seed=2) if weighted else None
    compare(lambda lib, x, p, w: lib.nn.functional.cross_entropy(x, p, w, reduction=reduction,
                                                                label_smoothing=smoothing), x, p, w, grad=(0, 1))


def test_cross_entropy_probabilities_gradcheck():
    x = engine.tensor(arr(3, 4), requires_grad=True)
    p = engine.tensor(probs(3, 4, seed=1), requires_grad=True)
    f = lambda x, p: F.cross_entropy(x, p, label_smoothing=0.1)  # noqa: E731
    assert gradcheck(f, (x, p))
    assert gradgradcheck(f, (x, p))


# ---- NLL ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3), (4,)])
def test_nll_loss_matches_torch(shape, weighted, reduction):
    if len(shape) == 1:
        x, t = arr(4), np.array(2)
    else:
        x, t = ce_case(shape, ignore=(0,))
    w = probs(4, seed=3) if weighted else None
    compare(lambda lib, x, t, w: lib.nn.functional.nll_loss(x, t, w, reduction=reduction), x, t, w, grad=(0,))


def test_nll_loss_of_log_softmax_is_cross_entropy_and_gradchecks():
    x, t = ce_case((4, 3), ignore=(1,))
    xe, te = engine.tensor(x, requires_grad=True), engine.tensor(t)
    np.testing.assert_allclose(F.nll_loss(F.log_softmax(xe, 1), te).item(), F.cross_entropy(xe, te).item(),
                               rtol=1e-14)
    assert gradcheck(lambda x: F.nll_loss(x, te, reduction="sum"), (xe,))
    assert gradgradcheck(lambda x: F.nll_loss(x, te), (xe,))


def test_class_index_errors():
    x = engine.zeros(4, 5)
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"^CrossEntropyLoss: expected target of shape \(4,\) with class indices "
                                         r"in \[0, 5\) .*or class probabilities of shape \(4, 5\) .*; got a int64 "
                                         r"target of shape \(4, 1\)"):
        ce(x, engine.zeros(4, 1, dtype=engine.int64))
    with pytest.raises(ValueError, match=r"got a float32 target of shape \(4,\)"):
        ce(x, engine.zeros(4))
    with pytest.raises(IndexError, match=r"^CrossEntropyLoss: target class index 7 is out of range for 5 classes"):
        ce(x, engine.tensor([0, 1, 7, -100]))
    with pytest.raises(IndexError, match=r"target class index -3 is out of range"):
        F.cross_entropy(x, engine.tensor([0, 1, -3, 2]))
    with pytest.raises(IndexError, match=r"^NLLLoss: target class index 5 is out of range for 5 classes"):
        nn.NLLLoss()(x, engine.tensor([0, 1, 5, 2]))
    with pytest.raises(ValueError, match=r"^nll_loss: expected target of shape \(4,\) with class indices in \[0, 5\)"):
        F.nll_loss(x, engine.zeros(4, 5))
    with pytest.raises(ValueError, match=r"weight must be a 1-D tensor with one entry per class \(5\), got \(3,\)"):
        nn.CrossEntropyLoss(weight=engine.ones(3))(x, engine.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"label_smoothing must be between 0.0 and 1.0, got 1.5"):
        F.cross_entropy(x, engine.tensor([0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match=r"weight is not differentiable; pass weight.detach\(\)"):
        F.cross_entropy(x, engine.tensor([0, 1, 2, 3]), weight=engine.ones(5, requires_grad=True))


# ---- binary cross entropy ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (3, 4), (4,)])
def test_binary_cross_entropy_matches_torch(weight_shape, reduction, dtype):
    x, y = probs(3, 4, dtype=dtype), probs(3, 4, seed=1, dtype=dtype)
    w = probs(*weight_shape, seed=2, dtype=dtype) if weight_shape else None
    compare(lambda lib, x, y, w: lib.nn.functional.binary_cross_entropy(x, y, w, reduction=reduction),
            x, y, w, grad=(0, 1), dtype=dtype)


def test_binary_cross_entropy_clamps_the_log_like_torch():
    x = np.array([0.0, 1.0, 1e-50, 1 - 1e-16, 0.5])
    y = np.array([1.0, 0.0, 0.3, 0.0, 0.5])
    compare(fn_of("binary_cross_entropy", reduction="none"), x, y, grad=(0,))  # 100, with gradient +-1e12


def test_binary_cross_entropy_gradcheck():
    x = engine.tensor(probs(2, 3), requires_grad=True)
    y = engine.tensor(probs(2, 3, seed=1), requires_grad=True)
    w = engine.tensor(probs(3, seed=2))
    f = lambda x, y: F.binary_cross_entropy(x, y, w)  # noqa: E731
    assert gradcheck(f, (x, y))
    assert gradgradcheck(f, (x, y))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted,pos_weighted", [(False, False), (True, False), (False, True), (True, True)])
def test_bce_with_logits_matches_torch(weighted, pos_weighted, reduction, dtype):
    x, y = arr(3, 4, dtype=dtype, scale=3), probs(3, 4, seed=1, dtype=dtype)
    w = probs(3, 4, seed=2, dtype=dtype) if weighted else None
    pw = probs(4, seed=3, dtype=dtype) * 3 if pos_weighted else None
    compare(lambda lib, x, y, w, pw: lib.nn.functional.binary_cross_entropy_with_logits(
        x, y, w, reduction=reduction, pos_weight=pw), x, y, w, pw, grad=(0, 1), dtype=dtype)


def test_bce_with_logits_is_stable_for_large_logits():
    x = np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    out = compare(lambda lib, x, y, pw: lib.nn.functional.binary_cross_entropy_with_logits(
        x, y, reduction="none", pos_weight=pw), x, y, np.array([2.0]), grad=(0, 1))
    assert np.isfinite(out.detach().numpy()).all()


def test_bce_with_logits_gradcheck():
    x = engine.tensor(arr(2, 3, scale=2), requires_grad=True)
    y = engine.tensor(probs(2, 3, seed=1), requires_grad=True)
    pw = engine.tensor(probs(3, seed=2) * 2)
    f = lambda x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=pw)  # noqa: E731
    assert gradcheck(f, (x, y))
    assert gradgradcheck(f, (x, y))


def test_binary_errors():
    with pytest.raises(RuntimeError, match=r"^BCELoss: all elements of input should be between 0 and 1"):
        nn.BCELoss()(engine.tensor([0.5, 1.5]), engine.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"^BCEWithLogitsLoss: target of shape \(4,\) does not match the input's "
                                         r"shape \(4, 1\)"):
        nn.BCEWithLogitsLoss()(engine.zeros(4, 1), engine.zeros(4))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast to the input's shape "
                                         r"\(4, 2\)"):
        F.binary_cross_entropy_with_logits(engine.zeros(4, 2), engine.zeros(4, 2), pos_weight=engine.ones(3))


# ---- KL divergence ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch(log_target, reduction):
    x = np.log(probs(3, 4))
    t = probs(3, 4, seed=1)
    if log_target:
        t = np.log(t)
    compare(fn_of("kl_div", reduction=reduction, log_target=log_target), x, t, grad=(0, 1))


def test_kl_div_zero_target_contributes_zero():
    x, t = np.log(probs(2, 3)), np.array([[0.0, 0.5, 0.5], [1.0, 0.0, 0.0]])
    compare(fn_of("kl_div", reduction="batchmean"), x, t, grad=(0,))


def test_kl_div_gradcheck():
    x = engine.tensor(np.log(probs(2, 3)), requires_grad=True)
    t = engine.tensor(probs(2, 3, seed=1), requires_grad=True)
    for log_target in (False, True):
        f = lambda x, t: F.kl_div(x, t, reduction="batchmean", log_target=log_target)  # noqa: E731
        assert gradcheck(f, (x, t))
        assert gradgradcheck(f, (x, t))


# ---- modules -------------------------------------------------------------------------------------------

MODULES = [
    ("MSELoss", {}, "reg"), ("L1Loss", {}, "reg"), ("SmoothL1Loss", dict(beta=0.5), "reg"),
    ("HuberLoss", dict(delta=0.5), "reg"), ("KLDivLoss", dict(reduction="batchmean", log_target=True), "reg"),
    ("CrossEntropyLoss", dict(ignore_index=1, label_smoothing=0.1), "idx"), ("NLLLoss", {}, "idx"),
    ("CrossEntropyLoss", dict(weight=True), "idx"), ("NLLLoss", dict(weight=True, reduction="sum"), "idx"),
    ("BCELoss", dict(weight=True), "prob"), ("BCEWithLogitsLoss", dict(weight=True, pos_weight=True), "logit"),
]


@pytest.mark.parametrize("name,kw,kind", MODULES)
def test_loss_modules_match_torch(name, kw, kind):
    consts = {k: probs(4, seed=9) for k in ("weight", "pos_weight") if kw.get(k)}
    m = getattr(nn, name)(**{**kw, **{k: engine.tensor(v) for k, v in consts.items()}})
    tm = getattr(torch.nn, name)(**{**kw, **{k: torch.tensor(v) for k, v in consts.items()}})
    assert repr(m) == repr(tm)
    assert list(m.state_dict()) == list(tm.state_dict())
    x = {"reg": arr(3, 4), "idx": arr(3, 4), "prob": probs(3, 4), "logit": arr(3, 4)}[kind]
    t = labels(4, 3, seed=1) if kind == "idx" else probs(3, 4, seed=1)
    compare(lambda lib, x, t: (m if lib is engine else tm)(x, t), x, t, grad=(0,))


def test_reduction_is_checked_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"^MSELoss: reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match=r"^KLDivLoss: reduction must be one of 'mean', 'batchmean', 'sum', 'none'"):
        nn.KLDivLoss(reduction="batch")
    with pytest.raises(ValueError, match=r"^cross_entropy: reduction must be one of 'mean', 'sum', 'none', got "
                                         r"'batchmean'"):
        F.cross_entropy(engine.zeros(2, 3), engine.tensor([0, 1]), reduction="batchmean")
    for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
                 "binary_cross_entropy_with_logits", "kl_div"):
        with pytest.raises(ValueError, match=rf"^{name}: reduction must be one of"):
            getattr(F, name)(engine.full((2,), 0.5), engine.full((2,), 0.5), reduction="x")


@pytest.mark.parametrize("size_average,reduce", [(False, None), (None, False), (True, True), (False, True)])
def test_legacy_size_average_and_reduce(size_average, reduce):
    x, t = arr(3, 4), labels(4, 3)
    kw = dict(size_average=size_average, reduce=reduce)
    assert nn.MSELoss(**kw).reduction == torch.nn.MSELoss(**kw).reduction
    compare(fn_of("cross_entropy", **kw), x, t, grad=(0,))


@pytest.mark.cuda
def test_losses_on_cuda_match_cpu():
    x, t, w = arr(4, 3, 2), labels(3, 4, 2), probs(3, seed=1)
    t[0, 1] = -100
    p, y = probs(4, 3, 2, seed=2), probs(4, 3, 2, seed=3)
    cases = [
        lambda d, x: F.cross_entropy(x, d(t), d(w), label_smoothing=0.1),
        lambda d, x: F.cross_entropy(x, d(p)),
        lambda d, x: F.nll_loss(F.log_softmax(x, 1), d(t), d(w)),
        lambda d, x: F.binary_cross_entropy(x.sigmoid(), d(y), d(w[:, None])),
        lambda d, x: F.binary_cross_entropy_with_logits(x, d(y), pos_weight=d(w[None, :, None] * 2)),
        lambda d, x: F.mse_loss(x, d(y)) + F.l1_loss(x, d(y)) + F.smooth_l1_loss(x, d(y)) + F.huber_loss(x, d(y)),
        lambda d, x: F.kl_div(F.log_softmax(x, 1), d(p), reduction="batchmean"),
    ]
    for case in cases:
        results = []
        for dev in ("cpu", "cuda"):
            xe = engine.tensor(x, device=dev, requires_grad=True)
            loss = case(lambda a: engine.tensor(a, device=dev), xe)
            loss.backward()
            assert loss.device.type == dev
            results.append((loss.cpu().detach().numpy(), xe.grad.cpu().numpy()))
        for c, g in zip(*results):
            np.testing.assert_allclose(g, c, rtol=1e-10, atol=1e-12)
