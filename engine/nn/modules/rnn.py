"""RNN, LSTM, GRU and their cells, with PyTorch's parameters, gate orders, shapes and reprs.

How a layer runs: for each layer and direction the input projection of every time step is one GEMM
(``F.linear`` over the whole sequence); only the hidden projection stays inside the time loop. That
loop is a single autograd node (``_Recurrence``): its forward and its backward through time run on
raw arrays of the device's ``xp``, a handful of whole-array calls per step, instead of recording some
fifteen Tensor ops per step. Backward needs only what forward kept per step (the gate activations).

The step and backward-step functions below are written once, over a small namespace ``m`` of math
(sigmoid, tanh, concatenation) and Python operators, so that they run on arrays or on Tensors. When a
backward must itself be differentiable (``create_graph=True``), ``_Recurrence.backward`` re-runs the
forward on the saved input Tensors and then the same backward code on Tensors, so the whole thing is
recorded and higher-order gradients are exact.

The cells are the same node over a sequence of one step.
"""
from __future__ import annotations

import math
import numbers
import warnings

from ... import creation
from ...autograd import grad_mode
from ...autograd.function import Function
from ...autograd.graph import raise_modified
from ...ops import elementwise as ew
from ...ops.shape import cat, stack
from ...tensor import Tensor
from .. import functional as F, init
from ..parameter import Parameter
from .linear import _check_features
from .module import Module

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


# ---- the math, on arrays (fast path) or on Tensors (recorded, for create_graph) ------------------

class _ArrayMath:
    """Raw arrays of one backend: nothing is recorded."""

    def __init__(self, xp):
        self.xp = xp

    def sigmoid(self, x):
        # through tanh: one transcendental call, and no overflow warnings for large negative x
        y = self.xp.tanh(0.5 * x)
        y *= 0.5
        y += 0.5
        return y

    def tanh(self, x):
        return self.xp.tanh(x)

    def relu(self, x):
        return self.xp.maximum(x, 0)

    def cat(self, xs, axis=-1):
        return self.xp.concatenate(xs, axis=axis)

    def stack(self, xs):
        return self.xp.stack(xs)

    def t(self, w):
        return self.xp.ascontiguousarray(w.T)  # BLAS is faster on a contiguous right operand

    def gate_scale(self, w_hh):
        return _lstm_gate_scale(self.xp, w_hh.shape[0] // 4, w_hh.dtype)


class _TensorMath:
    """Differentiable Tensor ops: every step is recorded on the tape."""
    sigmoid = staticmethod(ew.sigmoid)
    tanh = staticmethod(ew.tanh)
    relu = staticmethod(ew.relu)
    stack = staticmethod(stack)

    @staticmethod
    def cat(xs, axis=-1):
        return cat(xs, axis)

    @staticmethod
    def t(w):
        return w.T

    @staticmethod
    def gate_scale(w_hh):
        return Tensor._make(_lstm_gate_scale(w_hh.device.xp, w_hh.shape[0] // 4, w_hh._data.dtype), w_hh.device)


def _lstm_gate_scale(xp, H: int, dtype):
    """1/2 on the sigmoid gates (i, f, o), 1 on the tanh gate (g)."""
    scale = xp.full(4 * H, 0.5, dtype=dtype)
    scale[2 * H:3 * H] = 1
    return scale


class _Weights:
    """The recurrent weights of one layer and direction, prepared once per sequence.

    LSTM: the gates come from one tanh, sigmoid(x) = (1 + tanh(x / 2)) / 2, so the i, f, o columns of
    gx and of W_hh^T are halved up front (exact in binary floating point): act = tanh(.) * scale + shift.
    """

    def __init__(self, m, mode, w_hh, b_hh, w_hr):
        self.hh, self.b_hh, self.hr = w_hh, b_hh, w_hr
        self.hr_t = m.t(w_hr) if w_hr is not None else None
        self.hh_t = m.t(w_hh)
        self.scale = None
        if mode == "LSTM":
            self.scale = m.gate_scale(w_hh)
            self.shift, self.scale2 = 1 - self.scale, self.scale * self.scale
            self.hh_t = self.hh_t * self.scale


# One step forward: (gx_t, h, c) -> (h', c', what backward needs). gx_t is the input projection of the
# step, with both biases already in it except GRU's b_hh (it sits inside r * (W_hn h + b_hn)).
# One step back: (dh, dc, saved) -> (dh_prev, dc_prev, d gx_t, d(h @ W_hh^T [+ b_hh]) of the step).

def _rnn_tanh_step(m, gx_t, h, c, w):
    h = m.tanh(gx_t + h @ w.hh_t)
    return h, None, h


def _rnn_relu_step(m, gx_t, h, c, w):
    h = m.relu(gx_t + h @ w.hh_t)
    return h, None, h


def _rnn_tanh_back(m, dh, dc, h, w):
    d = dh * (1 - h * h)
    return d @ w.hh, None, d, d


def _rnn_relu_back(m, dh, dc, h, w):
    d = dh * (h > 0)
    return d @ w.hh, None, d, d


def _lstm_step(m, gx_t, h, c, w):
    """gx_t and w.hh_t come pre-scaled (see _Weights); gates in PyTorch's order i, f, g, o."""
    H = c.shape[-1]
    act = m.tanh(gx_t + h @ w.hh_t) * w.scale + w.shift
    i, f, g, o = act[..., :H], act[..., H:2 * H], act[..., 2 * H:3 * H], act[..., 3 * H:]
    c_new = f * c + i * g
    tc = m.tanh(c_new)
    hh = o * tc
    h_new = hh @ w.hr_t if w.hr is not None else hh  # proj_size: h = W_hr (o * tanh(c))
    return h_new, c_new, (act, c, tc, hh)


def _lstm_back(m, dh, dc, saved, w):
    act, c_prev, tc, hh = saved
    H = c_prev.shape[-1]
    i, f, g, o = act[..., :H], act[..., H:2 * H], act[..., 2 * H:3 * H], act[..., 3 * H:]
    dhh = dh @ w.hr if w.hr is not None else dh
    dc = dc + dhh * o * (1 - tc * tc)
    # d act / d gate = scale^2 - (act - shift)^2: sigmoid's s (1 - s) on i, f, o and tanh's 1 - g^2 on g
    centred = act - w.shift
    d = m.cat([dc * g, dc * c_prev, dc * i, dhh * tc]) * (w.scale2 - centred * centred)
    return d @ w.hh, dc * f, d, d


def _gru_step(m, gx_t, h, c, w):
    H = h.shape[-1]
    gh = h @ w.hh_t
    if w.b_hh is not None:
        gh = gh + w.b_hh
    rz = m.sigmoid(gx_t[..., :2 * H] + gh[..., :2 * H])  # gates in PyTorch's order: r, z, n
    r, z = rz[..., :H], rz[..., H:]
    ghn = gh[..., 2 * H:]
    n = m.tanh(gx_t[..., 2 * H:] + r * ghn)
    return n + z * (h - n), None, (r, z, n, ghn, h)  # (1 - z) * n + z * h


def _gru_back(m, dh, dc, saved, w):
    r, z, n, ghn, h_prev = saved
    dn = dh * (1 - z) * (1 - n * n)
    dz = dh * (h_prev - n) * z * (1 - z)
    dr = dn * ghn * r * (1 - r)
    dgh = m.cat([dr, dz, dn * r])
    return dh * z + dgh @ w.hh, None, m.cat([dr, dz, dn]), dgh


_STEPS = {"RNN_TANH": (_rnn_tanh_step, _rnn_tanh_back), "RNN_RELU": (_rnn_relu_step, _rnn_relu_back),
          "LSTM": (_lstm_step, _lstm_back), "GRU": (_gru_step, _gru_back)}


def _scan(m, mode, gx, h, c, w, reverse):
    """Run the recurrence over gx (L, N, G). Returns every step's h (a list in time order), the last
    c, and per step what backward needs. A plain loop: no recursion, however long the sequence."""
    step = _STEPS[mode][0]
    L = gx.shape[0]
    if w.scale is not None:
        gx = gx * w.scale
    hs, saved = [None] * L, [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        h, c, saved[t] = step(m, gx[t], h, c, w)
        hs[t] = h
    return hs, c, saved


def _scan_back(m, mode, g_out, g_hn, g_cn, saved, w, reverse):
    """Backpropagation through time, visiting the steps in the opposite order to ``_scan``. Returns the
    gradients of h0 and c0 and, per step, of gx_t, of the hidden projection, and of the step's h."""
    back = _STEPS[mode][1]
    L = len(saved)
    dgx, dgh, dhs = [None] * L, [None] * L, [None] * L
    dh, dc = g_hn, g_cn
    for t in (range(L) if reverse else range(L - 1, -1, -1)):
        dh = dh + g_out[t]
        dhs[t] = dh
        dh, dc, dgx[t], dgh[t] = back(m, dh, dc, saved[t], w)
    return dh, dc, dgx, dgh, dhs


class _Recurrence(Function):
    """One layer and direction over a whole sequence, as one node.

    Inputs: gx (L, N, G), the input projections; h0 (N, H_out); c0 (N, H) for LSTM (else None);
    w_hh (G, H_out); b_hh (G,) for GRU (else None: folded into gx); w_hr (H_out, H) for LSTM with
    proj_size (else None). Outputs: h of every step (L, N, H_out), h_n, and c_n for LSTM.
    """

    @staticmethod
    def forward(ctx, gx, h0, c0, w_hh, b_hh, w_hr, mode, reverse):
        data = [x._data if x is not None else None for x in (gx, h0, c0, w_hh, b_hh, w_hr)]
        m = _ArrayMath(gx.device.xp)
        hs, c, saved = _scan(m, mode, data[0], data[1], data[2], _Weights(m, mode, *data[3:]), reverse)
        out = m.stack(hs)
        ctx.save_for_backward(gx, h0, c0, w_hh, b_hh, w_hr)
        ctx.mode, ctx.reverse, ctx.steps, ctx.out = mode, reverse, saved, out
        dev = gx.device
        results = (Tensor._make(out, dev), Tensor._make(hs[0 if reverse else -1], dev))
        results += (Tensor._make(c, dev),) if c is not None else ()
        # the outputs share memory with what backward reads: remember their versions, as Op.save_output
        # does (the counters, not the tensors, so that no reference cycle forms)
        ctx.versions = [(r._vc, r._vc.value, r.shape) for r in results]
        return results

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn=None):
        gx, h0, c0, w_hh, b_hh, w_hr = ctx.saved_tensors
        for vc, version, shape in ctx.versions:
            if vc.value != version:
                raise_modified(shape, vc.value, version, ctx)
        mode, reverse = ctx.mode, ctx.reverse
        if grad_mode.is_grad_enabled():
            # create_graph: recompute the steps from the inputs with Tensor ops, so that the backward
            # below is recorded as a function of the inputs (double backward)
            m, w = _TensorMath, _Weights(_TensorMath, mode, w_hh, b_hh, w_hr)
            hs, _, saved = _scan(m, mode, gx, h0, c0, w, reverse)
            out = m.stack(hs)
        else:
            m = _ArrayMath(gx.device.xp)
            w = _Weights(m, mode, *(x._data if x is not None else None for x in (w_hh, b_hh, w_hr)))
            saved, out = ctx.steps, ctx.out
            h0 = h0._data
            g_out, g_hn = g_out._data, g_hn._data
            g_cn = g_cn._data if g_cn is not None else None
        dh0, dc0, dgx, dgh, dhs = _scan_back(m, mode, g_out, g_hn, g_cn, saved, w, reverse)

        need = ctx.needs_input_grad
        same = dgh[0] is dgx[0]  # RNN, LSTM: the hidden projection's gradient is gx's
        dgx = m.stack(dgx) if need[0] or (same and (need[3] or need[4])) else None
        dw_hh = db_hh = dw_hr = None
        if need[3] or need[4]:
            dgh = dgx if same else m.stack(dgh)
        if need[3]:
            # sum over steps of dgh_t^T h_{t-1}: one GEMM over the whole sequence
            prev = m.cat([out[1:], h0[None]], 0) if reverse else m.cat([h0[None], out[:-1]], 0)
            dw_hh = _gemm_tn(dgh, prev)
        if need[4]:
            db_hh = dgh.sum((0, 1))
        if need[5]:
            hh = m.stack([s[-1] for s in saved])  # the LSTM's unprojected o * tanh(c)
            dw_hr = _gemm_tn(m.stack(dhs), hh)
        grads = (dgx, dh0 if need[1] else None, dc0 if need[2] else None, dw_hh, db_hh, dw_hr)
        if m is not _TensorMath:
            dev = gx.device
            grads = tuple(Tensor._make(g, dev) if g is not None else None for g in grads)
        return grads + (None, None)


def _gemm_tn(a, b):
    """sum over (L, N) of a^T b, for a (L, N, P) and b (L, N, Q): a weight's gradient in one GEMM."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


# ---- the modules ----------------------------------------------------------------------------------

def _empty(*shape, device=None, dtype=None) -> Parameter:
    return Parameter(creation.empty(*shape, device=device, dtype=dtype))


def _input_bias(mode: str, b_ih, b_hh):
    """The bias added to the input projection: both biases, except GRU's b_hh (it sits inside r * (...))."""
    if b_ih is None:
        return None
    return b_ih if mode == "GRU" else b_ih + b_hh


def _describe(layer: Module) -> str:
    """The layer as its repr names it, for error messages: ``LSTM(10, 20, num_layers=2)``."""
    return f"{layer._get_name()}({layer.extra_repr()})"


def _check_dtype(layer: Module, what: str, t: Tensor, weight: Tensor) -> None:
    if t.dtype != weight.dtype:
        raise ValueError(f"{_describe(layer)}: {what} dtype ({t.dtype}) does not match "
                         f"weight dtype ({weight.dtype}). Convert the {what}: .to({weight.dtype}), or the "
                         f"model: model.to({t.dtype})")


class RNNBase(Module):
    """The multi-layer, optionally bidirectional recurrence shared by RNN, LSTM and GRU.

    Parameters per layer k and direction (suffix ``_reverse`` for the backward one), as PyTorch
    names and shapes them: weight_ih_l{k} (G*H, H_in), weight_hh_l{k} (G*H, H_out), bias_ih_l{k} and
    bias_hh_l{k} (G*H), and for LSTM with proj_size > 0 weight_hr_l{k} (proj_size, H); G is the
    number of gates (1, 4 or 3) and every one starts ~ U(-1/sqrt(H), 1/sqrt(H)).
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                             f"element being zeroed, got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                          f"expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=2)
        for name, value in (("bias", bias), ("batch_first", batch_first)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"{name} must be greater than zero, got {value}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size={proj_size} and "
                             f"hidden_size={hidden_size}")
        if mode not in _GATES:
            raise ValueError(f"Unrecognized RNN mode: {mode}; expected one of {', '.join(_GATES)}")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, proj_size

        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        directions = 2 if bidirectional else 1
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else real_hidden * directions
            for direction in range(directions):
                shapes = [("weight_ih", (gate_size, layer_input)), ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                names = []
                for base, shape in shapes:
                    names.append(f"{base}_l{layer}{'_reverse' if direction else ''}")
                    setattr(self, names[-1], _empty(*shape, device=device, dtype=dtype))
                self._flat_weights_names.extend(names)
                self._all_weights.append(names)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def flatten_parameters(self) -> None:
        """A no-op: PyTorch packs weights into one buffer for cuDNN; the engine needs no such layout."""

    @property
    def all_weights(self) -> list:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size != 0:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        return s

    def _weights(self, layer: int, direction: int) -> tuple:
        sfx = "_reverse" if direction else ""
        p = self._parameters
        return tuple(p.get(f"{base}_l{layer}{sfx}") for base in ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
                                                                   "weight_hr"))

    def forward(self, input, hx=None):
        """input (L, N, H_in), (N, L, H_in) with batch_first, or unbatched (L, H_in); hx the initial
        state(s), (D * num_layers, N, H_out) each (without N when unbatched), zeros when None.
        Returns (output, h_n), or (output, (h_n, c_n)) for LSTM, with PyTorch's shapes."""
        lstm = self.mode == "LSTM"
        if not isinstance(input, Tensor):
            raise TypeError(f"{_describe(self)}: expected input to be a Tensor, got {type(input).__name__} "
                            "(PackedSequence is not supported: pad the batch and pass a Tensor)")
        if input.ndim not in (2, 3):
            layout = "(N, L, H_in)" if self.batch_first else "(L, N, H_in)"
            raise ValueError(f"{_describe(self)}: expected a 3-D input {layout} or an unbatched 2-D input "
                             f"(L, H_in), got a {input.ndim}-D input of shape {tuple(input.shape)}")
        _check_features(self, input, self.input_size, "input_size")
        _check_dtype(self, "input", input, self.weight_ih_l0)
        batched = input.ndim == 3
        x = (input.transpose(0, 1) if self.batch_first else input) if batched else input.unsqueeze(1)
        if x.shape[0] == 0:
            raise ValueError(f"{_describe(self)}: expected a sequence of length > 0, got input of shape "
                             f"{tuple(input.shape)}")
        states = self._initial_states(hx, batched, x)
        out, h_n, c_n = self._layers(x, *states)
        if not batched:
            out, h_n = out.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, ((h_n, c_n) if lstm else h_n)

    def _initial_states(self, hx, batched: bool, x) -> tuple:
        """Per layer and direction, h0 and (LSTM) c0, each (N, H)."""
        lstm = self.mode == "LSTM"
        n_states = (2 if self.bidirectional else 1) * self.num_layers
        N = x.shape[1]
        sizes = [self.proj_size or self.hidden_size] + ([self.hidden_size] if lstm else [])
        if hx is None:
            out = [[creation.zeros(N, size, dtype=x.dtype, device=x.device)] * n_states for size in sizes]
            return out[0], (out[1] if lstm else [None] * n_states)
        if lstm and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{_describe(self)}: expected hx to be a tuple (h_0, c_0), got {type(hx).__name__}")
        out = []
        for k, (h, size) in enumerate(zip(hx if lstm else (hx,), sizes)):
            what = ("h_0", "c_0")[k]
            expected = (n_states, N, size) if batched else (n_states, size)
            if not isinstance(h, Tensor) or tuple(h.shape) != expected:
                got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
                raise RuntimeError(f"{_describe(self)}: expected {what} of shape {expected} "
                                   f"(num_layers * num_directions, {'N, ' if batched else ''}H), got {got}")
            _check_dtype(self, what, h, self.weight_ih_l0)
            out.append((h if batched else h.unsqueeze(1)).unbind(0))
        return out[0], (out[1] if lstm else [None] * n_states)

    def _layers(self, x, h0, c0):
        directions = 2 if self.bidirectional else 1
        L, N = x.shape[:2]
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            flat = x.reshape(L * N, x.shape[-1])
            outs = []
            for d in range(directions):
                k = layer * directions + d
                w_ih, w_hh, b_ih, b_hh, w_hr = self._weights(layer, d)
                gx = F.linear(flat, w_ih, _input_bias(self.mode, b_ih, b_hh)).reshape(L, N, w_ih.shape[0])
                res = _Recurrence.apply(gx, h0[k], c0[k], w_hh, b_hh if self.mode == "GRU" else None, w_hr,
                                        self.mode, d == 1)
                outs.append(res[0])
                h_n.append(res[1])
                if len(res) == 3:
                    c_n.append(res[2])
            x = outs[0] if directions == 1 else cat(outs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, stack(h_n), (stack(c_n) if c_n else None)


class RNN(RNNBase):
    """Elman RNN: h_t = nonlinearity(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), 'tanh' or 'relu'."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(f"RNN.__init__() got unexpected keyword arguments: {', '.join(kwargs)}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size,
                         num_layers, bias, batch_first, dropout, bidirectional, device=device, dtype=dtype)


class LSTM(RNNBase):
    """Long short-term memory, gates (i, f, g, o) stacked in that order; with proj_size > 0 the hidden
    state is projected, h_t = W_hr (o_t * tanh(c_t))."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device=device, dtype=dtype)


class GRU(RNNBase):
    """Gated recurrent unit, gates (r, z, n): n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn)),
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device=None, dtype=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(f"GRU.__init__() got unexpected keyword arguments: {', '.join(kwargs)}")
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype)


# ---- cells: one step, the same node over a sequence of length one ---------------------------------

class RNNCellBase(Module):
    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int, device=None, dtype=None):
        super().__init__()
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = _empty(num_chunks * hidden_size, input_size, device=device, dtype=dtype)
        self.weight_hh = _empty(num_chunks * hidden_size, hidden_size, device=device, dtype=dtype)
        if bias:
            self.bias_ih = _empty(num_chunks * hidden_size, device=device, dtype=dtype)
            self.bias_hh = _empty(num_chunks * hidden_size, device=device, dtype=dtype)
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            init.uniform_(weight, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _step(self, mode: str, input, hx, n_states: int) -> tuple:
        """One step from (h,) or (h, c) (zeros when hx is None); returns the new states."""
        desc = _describe(self)
        if not isinstance(input, Tensor) or input.ndim not in (1, 2):
            got = f"{input.ndim}-D input of shape {tuple(input.shape)}" if isinstance(input, Tensor) \
                else type(input).__name__
            raise ValueError(f"{desc}: expected input (N, input_size) or unbatched (input_size,), got {got}")
        _check_features(self, input, self.input_size, "input_size")
        _check_dtype(self, "input", input, self.weight_ih)
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        N = x.shape[0]
        if hx is None:
            states = [creation.zeros(N, self.hidden_size, dtype=x.dtype, device=x.device)] * n_states
        else:
            states = []
            for k, h in enumerate(hx):
                what = "hx" if n_states == 1 else f"hx[{k}]"
                expected = (N, self.hidden_size) if batched else (self.hidden_size,)
                if not isinstance(h, Tensor) or tuple(h.shape) != expected:
                    got = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
                    raise RuntimeError(f"{desc}: expected {what} of shape {expected} "
                                       f"({'N, ' if batched else ''}hidden_size), got {got}")
                _check_dtype(self, what, h, self.weight_ih)
                states.append(h if batched else h.unsqueeze(0))
        gx = F.linear(x, self.weight_ih, _input_bias(mode, self.bias_ih, self.bias_hh)).unsqueeze(0)
        c0 = states[1] if n_states == 2 else None
        new = _Recurrence.apply(gx, states[0], c0, self.weight_hh, self.bias_hh if mode == "GRU" else None,
                                None, mode, False)[1:]
        return new if batched else tuple(s.squeeze(0) for s in new)


class RNNCell(RNNCellBase):
    """h' = nonlinearity(x W_ih^T + b_ih + h W_hh^T + b_hh)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, nonlinearity: str = "tanh",
                 device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 1, device=device, dtype=dtype)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        mode = "RNN_TANH" if self.nonlinearity == "tanh" else "RNN_RELU"
        return self._step(mode, input, None if hx is None else (hx,), 1)[0]


class LSTMCell(RNNCellBase):
    """One LSTM step: returns (h', c')."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError(f"{_describe(self)}: expected hx to be a tuple (h_0, c_0), "
                            f"got {type(hx).__name__}")
        return self._step("LSTM", input, hx, 2)


class GRUCell(RNNCellBase):
    """One GRU step: returns h'."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device=device, dtype=dtype)

    def forward(self, input, hx=None):
        return self._step("GRU", input, None if hx is None else (hx,), 1)[0]
