"""engine.optim.lr_scheduler against torch.optim.lr_scheduler: the lrs (and cycled momentum/betas) at
every step, state_dict round trips that resume exactly, chained and sequential use, errors."""
import copy
import math
import re
import warnings

import numpy as np
import pytest

import engine
from engine import optim
from engine.optim import lr_scheduler as sched

torch = pytest.importorskip("torch")
tsched = torch.optim.lr_scheduler

TOL = dict(rtol=1e-12, atol=1e-15)
LRS = [0.1, 0.05]


def _optimizers(name="SGD", **kw):
    """The same two-group optimizer in both libraries (no gradients: step() leaves the params alone)."""
    kw = kw or ({"momentum": 0.9} if name in ("SGD", "RMSprop") else {})
    e = getattr(optim, name)([{"params": [engine.zeros(2, requires_grad=True)], "lr": LRS[0]},
                              {"params": [engine.zeros(3, requires_grad=True)], "lr": LRS[1]}], **kw)
    t = getattr(torch.optim, name)([{"params": [torch.zeros(2, requires_grad=True)], "lr": LRS[0]},
                                    {"params": [torch.zeros(3, requires_grad=True)], "lr": LRS[1]}], **kw)
    return e, t


def _momenta(opt):
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _assert_same(e_opt, t_opt, e_s, t_s, step):
    np.testing.assert_allclose(e_s.get_last_lr(), t_s.get_last_lr(), **TOL, err_msg=f"get_last_lr at {step}")
    np.testing.assert_allclose([g["lr"] for g in e_opt.param_groups], [g["lr"] for g in t_opt.param_groups],
                               **TOL, err_msg=f"group lr at {step}")
    np.testing.assert_allclose(_momenta(e_opt), _momenta(t_opt), **TOL, err_msg=f"momentum at {step}")


def _step_both(e_opt, t_opt, e_s, t_s, step, metric=None):
    e_opt.step()
    t_opt.step()
    if metric is None:
        e_s.step()
        t_s.step()
    else:
        e_s.step(metric)
        t_s.step(metric)
    _assert_same(e_opt, t_opt, e_s, t_s, step)


# Each case: (optimizer name, scheduler class name, kwargs). Lambdas are module-level so that both
# libraries get the very same function.
def _warmup(epoch):
    return min(1.0, (epoch + 1) / 5) * 0.97 ** epoch


def _half(epoch):
    return 0.5 if epoch % 7 == 0 else 1.0


CASES = [
    ("SGD", "StepLR", dict(step_size=4, gamma=0.5)),
    ("SGD", "MultiStepLR", dict(milestones=[3, 8, 8, 20], gamma=0.3)),
    ("SGD", "ExponentialLR", dict(gamma=0.9)),
    ("SGD", "CosineAnnealingLR", dict(T_max=7)),
    ("SGD", "CosineAnnealingLR", dict(T_max=5, eta_min=0.01)),  # several periods: down and back up
    ("SGD", "CosineAnnealingWarmRestarts", dict(T_0=4)),
    ("SGD", "CosineAnnealingWarmRestarts", dict(T_0=3, T_mult=2, eta_min=1e-3)),
    ("SGD", "LinearLR", dict()),
    ("SGD", "LinearLR", dict(start_factor=0.1, end_factor=0.8, total_iters=12)),
    ("SGD", "ConstantLR", dict()),
    ("SGD", "ConstantLR", dict(factor=0.25, total_iters=9)),
    ("SGD", "LambdaLR", dict(lr_lambda=_warmup)),
    ("SGD", "LambdaLR", dict(lr_lambda=[_warmup, lambda e: 1 / (1 + e)])),
    ("SGD", "MultiplicativeLR", dict(lr_lambda=_half)),
    ("SGD", "PolynomialLR", dict(total_iters=20, power=2.0)),
    ("SGD", "OneCycleLR", dict(max_lr=1.0, total_steps=31)),
    ("SGD", "OneCycleLR", dict(max_lr=[1.0, 0.5], epochs=4, steps_per_epoch=8, anneal_strategy="linear",
                               pct_start=0.25, div_factor=10.0, final_div_factor=100.0)),
    ("Adam", "OneCycleLR", dict(max_lr=0.01, total_steps=40, three_phase=True, base_momentum=0.8)),
    ("SGD", "OneCycleLR", dict(max_lr=0.3, total_steps=31, cycle_momentum=False)),
    ("SGD", "CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=4)),
    ("Adam", "CyclicLR", dict(base_lr=[0.001, 0.002], max_lr=0.01, step_size_up=3, step_size_down=5,
                              mode="triangular2", base_momentum=0.85, max_momentum=0.95)),
    ("SGD", "CyclicLR", dict(base_lr=0.01, max_lr=0.1, step_size_up=4, mode="exp_range", gamma=0.9)),
]


def _show(v):
    """A stable test id for an argument (functions by name: addresses differ between processes)."""
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(map(_show, v)) + "]"
    return getattr(v, "__name__", str(v))


def _ids(case):
    return case[1] + "-" + ",".join(f"{k}={_show(v)}" for k, v in case[2].items())


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_lr_sequence_matches_torch(case):
    opt_name, name, kw = case
    e_opt, t_opt = _optimizers(opt_name)
    e_s, t_s = getattr(sched, name)(e_opt, **kw), getattr(tsched, name)(t_opt, **kw)
    _assert_same(e_opt, t_opt, e_s, t_s, 0)
    seen = {round(e_s.get_last_lr()[0], 12)}
    for step in range(1, 31):
        _step_both(e_opt, t_opt, e_s, t_s, step)
        seen.add(round(e_s.get_last_lr()[0], 12))
    assert len(seen) >= 2  # the schedule did change the lr
    assert set(e_s.state_dict()) == set(t_s.state_dict())


@pytest.mark.parametrize("case", [c for c in CASES if c[1] != "OneCycleLR"][::2] + [CASES[15], CASES[17]], ids=_ids)
def test_state_dict_round_trip_resumes(case):
    """Save optimizer + scheduler after 12 steps, build fresh ones, load, continue: the same lrs as an
    uninterrupted run (and as torch)."""
    opt_name, name, kw = case
    e_opt, t_opt = _optimizers(opt_name)
    e_s, t_s = getattr(sched, name)(e_opt, **kw), getattr(tsched, name)(t_opt, **kw)
    for step in range(1, 13):
        _step_both(e_opt, t_opt, e_s, t_s, step)
    saved_sched, saved_opt = copy.deepcopy(e_s.state_dict()), copy.deepcopy(e_opt.state_dict())

    r_opt, _ = _optimizers(opt_name)
    r_s = getattr(sched, name)(r_opt, **kw)  # the scheduler first: building it writes the lrs
    r_s.load_state_dict(saved_sched)
    r_opt.load_state_dict(saved_opt)
    for step in range(13, 31):
        _step_both(e_opt, t_opt, e_s, t_s, step)
        r_opt.step()
        r_s.step()
        assert r_s.get_last_lr() == e_s.get_last_lr()
        assert [g["lr"] for g in r_opt.param_groups] == [g["lr"] for g in e_opt.param_groups]
        assert _momenta(r_opt) == _momenta(e_opt)


def test_cosine_warm_restarts_fractional_epochs():
    for T_mult in (1, 2):
        e_opt, t_opt = _optimizers()
        e_s = sched.CosineAnnealingWarmRestarts(e_opt, T_0=3, T_mult=T_mult, eta_min=0.001)
        t_s = tsched.CosineAnnealingWarmRestarts(t_opt, T_0=3, T_mult=T_mult, eta_min=0.001)
        iters = 4
        for epoch in range(12):
            for i in range(iters):
                e_opt.step()
                t_opt.step()
                e_s.step(epoch + i / iters)
                t_s.step(epoch + i / iters)
                _assert_same(e_opt, t_opt, e_s, t_s, epoch + i / iters)
        assert e_s.last_epoch == t_s.last_epoch == 11
        e_s.step(1.5)  # back in time: into the first period
        t_s.step(1.5)
        _assert_same(e_opt, t_opt, e_s, t_s, 1.5)
        with pytest.raises(ValueError, match="Expected non-negative epoch, but got -1"):
            e_s.step(-1)


@pytest.mark.parametrize("kw", [dict(), dict(mode="max", factor=0.5, patience=2, threshold=0.1, cooldown=2),
                                dict(threshold_mode="abs", threshold=0.05, patience=1, min_lr=[0.02, 0.001]),
                                dict(mode="max", threshold_mode="abs", patience=0, factor=0.9, eps=0.003)])
def test_reduce_lr_on_plateau(kw):
    e_opt, t_opt = _optimizers()
    e_s, t_s = sched.ReduceLROnPlateau(e_opt, **kw), tsched.ReduceLROnPlateau(t_opt, **kw)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.89, 0.9, 0.91, 0.92, 0.5, 0.5, 0.5, 0.5, 0.49, 0.6] * 3
    for step, m in enumerate(metrics, 1):
        _step_both(e_opt, t_opt, e_s, t_s, step, metric=engine.tensor(m) if step % 2 else m)
        assert (e_s.num_bad_epochs, e_s.cooldown_counter, e_s.best) == (t_s.num_bad_epochs, t_s.cooldown_counter,
                                                                        t_s.best)
    assert e_opt.param_groups[0]["lr"] < LRS[0]
    assert set(e_s.state_dict()) == set(t_s.state_dict())

    resumed_opt, _ = _optimizers()
    resumed = sched.ReduceLROnPlateau(resumed_opt, **kw)
    resumed.load_state_dict(copy.deepcopy(e_s.state_dict()))
    resumed_opt.load_state_dict(copy.deepcopy(e_opt.state_dict()))
    for m in metrics[:10]:
        e_s.step(m)
        resumed.step(m)
        assert resumed.get_last_lr() == e_s.get_last_lr()


def test_sequential_lr():
    for milestones, make in [
        ([5], lambda s, o: [s.LinearLR(o, start_factor=0.1, total_iters=5), s.CosineAnnealingLR(o, T_max=10)]),
        ([3, 10], lambda s, o: [s.ConstantLR(o, factor=0.5, total_iters=3), s.ExponentialLR(o, gamma=0.9),
                                s.StepLR(o, step_size=4, gamma=0.5)]),
    ]:
        e_opt, t_opt = _optimizers()
        e_s = sched.SequentialLR(e_opt, make(sched, e_opt), milestones=milestones)
        t_s = tsched.SequentialLR(t_opt, make(tsched, t_opt), milestones=milestones)
        _assert_same(e_opt, t_opt, e_s, t_s, 0)
        for step in range(1, 31):
            _step_both(e_opt, t_opt, e_s, t_s, step)
            if step == 14:
                saved_sched, saved_opt = copy.deepcopy(e_s.state_dict()), copy.deepcopy(e_opt.state_dict())
        assert set(saved_sched) == set(t_s.state_dict())
        assert len(saved_sched["_schedulers"]) == len(milestones) + 1

        r_opt, _ = _optimizers()
        r_s = sched.SequentialLR(r_opt, make(sched, r_opt), milestones=milestones)
        r_s.load_state_dict(saved_sched)
        r_opt.load_state_dict(saved_opt)
        e_opt2, _ = _optimizers()
        e_s2 = sched.SequentialLR(e_opt2, make(sched, e_opt2), milestones=milestones)
        for step in range(1, 31):
            e_opt2.step()
            e_s2.step()
            if step > 14:
                r_opt.step()
                r_s.step()
                assert r_s.get_last_lr() == e_s2.get_last_lr(), step


def test_chained_schedulers():
    """ChainedScheduler, and two schedulers stepped by hand on one optimizer: each multiplies its change in."""
    def make(s, o):
        return [s.ExponentialLR(o, gamma=0.95), s.CosineAnnealingLR(o, T_max=6, eta_min=0.001),
                s.MultiStepLR(o, milestones=[4, 9], gamma=0.5)]

    e_opt, t_opt = _optimizers()
    e_s, t_s = sched.ChainedScheduler(make(sched, e_opt)), tsched.ChainedScheduler(make(tsched, t_opt))
    _assert_same(e_opt, t_opt, e_s, t_s, 0)
    for step in range(1, 31):
        _step_both(e_opt, t_opt, e_s, t_s, step)

    e_opt, t_opt = _optimizers()
    e_list, t_list = make(sched, e_opt), make(tsched, t_opt)
    for step in range(1, 31):
        e_opt.step()
        t_opt.step()
        for a, b in zip(e_list, t_list):
            a.step()
            b.step()
        _assert_same(e_opt, t_opt, e_list[-1], t_list[-1], step)

    e_opt, _ = _optimizers()
    chained = sched.ChainedScheduler(make(sched, e_opt))
    sd = chained.state_dict()
    assert len(sd["_schedulers"]) == 3 and "optimizer" not in sd


def test_closed_form_with_epoch_argument():
    """The deprecated step(epoch) jumps using the closed form, as torch does."""
    for name, kw in [("StepLR", dict(step_size=3, gamma=0.5)), ("MultiStepLR", dict(milestones=[2, 5])),
                     ("ExponentialLR", dict(gamma=0.8)), ("CosineAnnealingLR", dict(T_max=6)),
                     ("LinearLR", dict(total_iters=4)), ("ConstantLR", dict(total_iters=3)),
                     ("PolynomialLR", dict(total_iters=6)), ("LambdaLR", dict(lr_lambda=_warmup))]:
        e_opt, t_opt = _optimizers()
        e_s, t_s = getattr(sched, name)(e_opt, **kw), getattr(tsched, name)(t_opt, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for epoch in [5, 2, 9, 0, 4]:
                e_opt.step()
                t_opt.step()
                e_s.step(epoch)
                t_s.step(epoch)
                _assert_same(e_opt, t_opt, e_s, t_s, f"{name} epoch {epoch}")


def test_resume_with_last_epoch():
    e_opt, t_opt = _optimizers()
    e_s, t_s = sched.CosineAnnealingLR(e_opt, T_max=10), tsched.CosineAnnealingLR(t_opt, T_max=10)
    for step in range(1, 5):
        _step_both(e_opt, t_opt, e_s, t_s, step)
    e_s2, t_s2 = sched.CosineAnnealingLR(e_opt, T_max=10, last_epoch=4), tsched.CosineAnnealingLR(t_opt, T_max=10,
                                                                                                  last_epoch=4)
    for step in range(5, 15):
        _step_both(e_opt, t_opt, e_s2, t_s2, step)
    fresh, _ = _optimizers()
    with pytest.raises(KeyError, match="param 'initial_lr' is not specified in param_groups\\[0\\]"):
        sched.StepLR(fresh, step_size=2, last_epoch=3)


def test_base_behaviour_and_warnings():
    e_opt, _ = _optimizers()
    s = sched.StepLR(e_opt, step_size=2)
    assert s.last_epoch == 0 and s.base_lrs == LRS and s.get_last_lr() == LRS
    assert [g["initial_lr"] for g in e_opt.param_groups] == LRS
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        s.step()
    with pytest.warns(UserWarning, match="please use `get_last_lr\\(\\)`"):
        s.get_lr()
    assert "optimizer" not in s.state_dict()
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        sched.StepLR([], step_size=2)

    e_opt, _ = _optimizers()
    s = sched.ExponentialLR(e_opt, gamma=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # optimizer first, then scheduler: no warning
        e_opt.step()
        s.step()
    assert s.get_last_lr() == [0.05, 0.025]


def test_lambda_state_dict_keeps_callable_objects_state():
    class Scale:
        def __init__(self, k):
            self.k = k

        def __call__(self, epoch):
            return self.k ** epoch

    e_opt, _ = _optimizers()
    s = sched.LambdaLR(e_opt, [Scale(0.9), lambda e: 1.0])
    sd = s.state_dict()
    assert sd["lr_lambdas"] == [{"k": 0.9}, None] and "optimizer" not in sd
    other_opt, _ = _optimizers()
    other = sched.LambdaLR(other_opt, [Scale(0.5), lambda e: 1.0])
    other.load_state_dict(sd)
    assert other.lr_lambdas[0].k == 0.9 and sd["lr_lambdas"] == [{"k": 0.9}, None]


INVALID = [
    ("ConstantLR", dict(factor=1.5)), ("LinearLR", dict(start_factor=0)), ("LinearLR", dict(end_factor=2.0)),
    ("LambdaLR", dict(lr_lambda=[_warmup])), ("MultiplicativeLR", dict(lr_lambda=[_half, _half, _half])),
    ("ReduceLROnPlateau", dict(factor=1.0)), ("ReduceLROnPlateau", dict(mode="mid")),
    ("ReduceLROnPlateau", dict(threshold_mode="pct")), ("ReduceLROnPlateau", dict(min_lr=[0.1])),
    ("CosineAnnealingWarmRestarts", dict(T_0=0)), ("CosineAnnealingWarmRestarts", dict(T_0=2, T_mult=0)),
    ("CosineAnnealingWarmRestarts", dict(T_0=2.5)), ("CosineAnnealingWarmRestarts", dict(T_0=2, eta_min="0")),
    ("OneCycleLR", dict(max_lr=0.1)), ("OneCycleLR", dict(max_lr=0.1, total_steps=0)),
    ("OneCycleLR", dict(max_lr=0.1, epochs=0, steps_per_epoch=3)),
    ("OneCycleLR", dict(max_lr=0.1, epochs=2, steps_per_epoch=-3)),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, pct_start=1.5)),
    ("OneCycleLR", dict(max_lr=0.1, total_steps=10, anneal_strategy="exp")),
    ("OneCycleLR", dict(max_lr=[0.1, 0.2, 0.3], total_steps=10)),
    ("CyclicLR", dict(base_lr=0.01, max_lr=0.1, mode="square")),
]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: _ids((None,) + c))
def test_invalid_arguments_raise_torchs_message(case):
    name, kw = case
    e_opt, t_opt = _optimizers()
    with pytest.raises(ValueError) as expected:
        getattr(tsched, name)(t_opt, **kw)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        getattr(sched, name)(e_opt, **kw)


def test_cycle_momentum_needs_momentum():
    e_opt, t_opt = _optimizers("Adagrad", lr=0.1)
    with pytest.raises(ValueError) as expected:
        tsched.OneCycleLR(t_opt, max_lr=0.1, total_steps=10)
    with pytest.raises(ValueError, match=re.escape(str(expected.value))):
        sched.OneCycleLR(e_opt, max_lr=0.1, total_steps=10)
    sched.OneCycleLR(e_opt, max_lr=0.1, total_steps=10, cycle_momentum=False)


def test_one_cycle_refuses_too_many_steps():
    e_opt, _ = _optimizers()
    s = sched.OneCycleLR(e_opt, max_lr=0.1, total_steps=3)
    for _ in range(3):
        e_opt.step()
        s.step()
    with pytest.raises(ValueError, match="Tried to step 4 times. The specified number of total steps is 3"):
        s.step()


def test_sequential_and_chained_errors():
    e_opt, t_opt = _optimizers()
    other, _ = _optimizers()
    with pytest.raises(ValueError, match="expects at least one scheduler"):
        sched.SequentialLR(e_opt, [], milestones=[])
    with pytest.raises(ValueError, match="expects number of schedulers provided to be one more"):
        sched.SequentialLR(e_opt, [sched.StepLR(e_opt, 2), sched.StepLR(e_opt, 3)], milestones=[1, 2])
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        sched.SequentialLR(e_opt, [sched.StepLR(e_opt, 2), sched.StepLR(other, 3)], milestones=[2])
    with pytest.raises(ValueError, match="does not support `ReduceLROnPlateau`"):
        sched.ChainedScheduler([sched.ReduceLROnPlateau(e_opt)])
    assert math.isclose(sched.ChainedScheduler([sched.StepLR(e_opt, 2)]).get_last_lr()[0], e_opt.param_groups[0]["lr"])
