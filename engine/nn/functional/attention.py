"""Attention: ``scaled_dot_product_attention`` and ``multi_head_attention_forward``, computed as
PyTorch's math path does, with the attention weights made by one fused node."""
from __future__ import annotations

import math
import warnings

from ... import _native, _parallel, dtypes
from ...autograd.graph import Op
from ...ops.linalg import matmul
from ...ops.reduce import SoftmaxGrad
from ...ops.shape import cat
from ...ops._util import ieee, sum_to
from ...tensor import Tensor
from .common import dropout, linear, pad

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]


class AttentionWeights(Op):
    """P = softmax(q @ k^T * scale + mask) over the last dim, as one node.

    Forward allocates one (..., L, S) array and works in place on it. Backward is softmax's backward
    followed by the two matmuls', and reads only this node's inputs and output (re-wrapped into the
    graph), so it is differentiable again like every op. With ``safe`` a row whose every score is -inf
    gives zeros (PyTorch's SDPA); without it, nan (PyTorch's need_weights path, a plain softmax).
    """
    save_inputs = True
    save_output = True

    def forward(self, q, k, mask):
        xp, scale, safe = self.xp, self.scale, self.safe
        s = _parallel.batched_matmul(xp, q, xp.swapaxes(k, -1, -2))
        # a mask of the scores' last two dims goes with each piece of whole (L, S) matrices; any other
        # is added in one pass first
        per_matrix = mask is None or mask.ndim <= 2
        if per_matrix and s.dtype == xp.float32 and _native.usable(xp, s, mask) and s.size:
            _native.attention_softmax(s, mask, scale, safe)  # the same, in one kernel
            return s
        if not per_matrix:
            _parallel.ufunc(xp, xp.multiply, s, s.dtype.type(scale), out=s)
            _parallel.ufunc(xp, xp.add, s, mask, out=s)

        def kernel(s):
            if per_matrix:
                s *= s.dtype.type(scale)
                if mask is not None:
                    s += mask
            m = s.max(axis=-1, keepdims=True)
            with ieee(xp):  # -inf scores are answers, not warnings
                # a row of -inf stays -inf, so its entries exp to 0
                s -= xp.where(xp.isfinite(m), m, 0)
                xp.exp(s, out=s)
                den = s.sum(axis=-1, keepdims=True)
                if safe:
                    den[den == 0] = 1  # only a row of all -inf sums to 0 (its max entry gives exp(0) = 1)
                s /= den

        _parallel.map_rows(xp, kernel, s, lead=s.ndim - 2)  # pieces of whole matrices, over the threads
        return s

    def backward(self, g):
        q, k, mask = self.inputs
        p = self.output
        gs = SoftmaxGrad.apply(g, p, dim=-1)  # through the softmax
        gq = sum_to(matmul(gs, k) * self.scale, q.shape) if self.needs_grad(0) else None
        gk = sum_to(matmul(gs.mT, q) * self.scale, k.shape) if self.needs_grad(1) else None
        gm = sum_to(gs, mask.shape) if self.needs_grad(2) else None
        return gq, gk, gm


def _attend(q, k, v, mask, dropout_p: float, scale: float, safe: bool):
    """(softmax(q k^T scale + mask), dropped out) @ v, and the weights (after dropout, as PyTorch)."""
    weights = AttentionWeights.apply(q, k, mask, scale=scale, safe=safe)
    if dropout_p > 0:
        weights = dropout(weights, dropout_p)
    return matmul(weights, v), weights


def _additive_mask(mask, name: str, like: Tensor, masked_when: bool):
    """A bool mask as a float one of ``like``'s dtype: -inf where ``mask == masked_when`` (True for
    MultiheadAttention's masks, False for SDPA's), 0 elsewhere. Float masks pass through unchanged."""
    if mask is None:
        return None
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a Tensor or None, got {type(mask).__name__}")
    if mask.dtype is dtypes.bool_:
        xp = mask.device.xp
        arr = xp.where(mask._data == masked_when, -math.inf, 0.0).astype(like._data.dtype)
        return Tensor._make(arr, mask.device)
    if not mask.dtype.is_floating_point:
        raise RuntimeError(f"only bool and floating types of {name} are supported, got {mask.dtype}")
    if mask.dtype is not like.dtype:
        raise RuntimeError(f"Expected {name} dtype to be bool or to match query dtype ({like.dtype}), got "
                           f"{mask.dtype}; convert it with .to({like.dtype})")
    return mask


def _causal_mask(L: int, S: int, like: Tensor) -> Tensor:
    """-inf above the diagonal of an (L, S) matrix: position i attends to positions 0..i."""
    xp = like.device.xp
    return Tensor._make(xp.triu(xp.full((L, S), -math.inf, dtype=like._data.dtype), 1), like.device)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False):
    """softmax(query @ key^T * scale + mask) @ value over (..., L, E), (..., S, E), (..., S, Ev).

    A bool ``attn_mask`` marks with True the positions that take part (the inverse of
    MultiheadAttention's masks); a float one is added to the scores. A query row with nothing to
    attend to gives zeros, as in PyTorch. Dropout (``dropout_p``) is always applied when > 0.
    """
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, Tensor) or x.ndim < 2 or not x.dtype.is_floating_point:
            raise RuntimeError(f"scaled_dot_product_attention: {name} must be a floating-point Tensor of "
                               f"shape (..., seq_len, features), got "
                               f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if not (query.dtype is key.dtype is value.dtype):
        raise RuntimeError(f"scaled_dot_product_attention: expected query, key and value to have the same "
                           f"dtype, got {query.dtype}, {key.dtype} and {value.dtype}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: query {tuple(query.shape)}, key {tuple(key.shape)} and "
                           f"value {tuple(value.shape)} do not fit: query and key need the same last dim, "
                           "key and value the same sequence length (dim -2)")
    if enable_gqa and key.ndim >= 3 and query.shape[-3] != key.shape[-3]:
        key, value = _repeat_kv_heads(query, key, value)
    L, S = query.shape[-2], key.shape[-2]
    if is_causal:
        if attn_mask is not None:
            raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when "
                               "is_causal=True; pass one or the other")
        mask = _causal_mask(L, S, query)
    else:
        mask = _additive_mask(attn_mask, "attn_mask", query, masked_when=False)
    if mask is not None:  # the scores are updated in place: the mask may not broadcast them up
        scores = _scores_shape(query, key)
        if mask.ndim > len(scores) or any(m not in (1, d) for m, d in zip(mask.shape[::-1], scores[::-1])):
            raise RuntimeError(f"scaled_dot_product_attention: attn_mask of shape {tuple(mask.shape)} does not "
                               f"broadcast to the attention scores' shape {scores}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return _attend(query, key, value, mask, dropout_p, scale, safe=True)[0]


def _scores_shape(query, key) -> tuple:
    """(*batch, L, S), the batch dims of query and key broadcast together."""
    n = max(query.ndim, key.ndim) - 2
    qb, kb = ((1,) * (n + 2 - x.ndim) + tuple(x.shape[:-2]) for x in (query, key))
    return tuple(a if b == 1 else b for a, b in zip(qb, kb)) + (query.shape[-2], key.shape[-2])


def _repeat_kv_heads(query, key, value):
    """Grouped-query attention: each key/value head serves ``Hq // Hkv`` consecutive query heads
    (PyTorch's repeat_interleave on dim -3)."""
    hq, hk, hv = query.shape[-3], key.shape[-3], value.shape[-3]
    if hk != hv or hq % hk:
        raise RuntimeError(f"scaled_dot_product_attention with enable_gqa=True: the number of query heads "
                           f"({hq}) must be a multiple of the number of key/value heads ({hk}, {hv}), and key "
                           "and value must have as many heads")

    def repeat(x):
        lead, (h, s, e) = tuple(x.shape[:-3]), tuple(x.shape[-3:])
        return x.unsqueeze(-3).expand(*lead, h, hq // h, s, e).reshape(*lead, hq, s, e)
    return repeat(key), repeat(value)


# ---- multi-head attention -----------------------------------------------------------------------

def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads: int) -> bool:
    """Whether the input is batched (3-D) or not (2-D); any other combination is an error."""
    if query.ndim not in (2, 3):
        raise RuntimeError(f"multi_head_attention_forward: query should be an unbatched 2-D (L, E) or batched "
                           f"3-D (L, N, E) tensor, got shape {tuple(query.shape)}")
    batched = query.ndim == 3
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise RuntimeError(f"multi_head_attention_forward: for a {query.ndim}-D query, key and value must be "
                           f"{query.ndim}-D too, got {key.ndim}-D and {value.ndim}-D")
    if key_padding_mask is not None and key_padding_mask.ndim != query.ndim - 1:
        raise RuntimeError(f"multi_head_attention_forward: for a {query.ndim}-D query, key_padding_mask must be "
                           f"{query.ndim - 1}-D ({'(N, S)' if batched else '(S,)'}), got shape "
                           f"{tuple(key_padding_mask.shape)}")
    if attn_mask is not None:
        if attn_mask.ndim not in (2, 3):
            raise RuntimeError(f"multi_head_attention_forward: attn_mask must be 2-D (L, S) or 3-D "
                               f"(N * num_heads, L, S), got shape {tuple(attn_mask.shape)}")
        if not batched and attn_mask.ndim == 3:
            expected = (num_heads, query.shape[0], key.shape[0])
            if tuple(attn_mask.shape) != expected:
                raise RuntimeError(f"multi_head_attention_forward: expected a 3-D attn_mask of shape {expected} "
                                   f"for an unbatched query, got {tuple(attn_mask.shape)}")
    return batched


def multi_head_attention_forward(query, key, value, embed_dim_to_check: int, num_heads: int, in_proj_weight,
                                 in_proj_bias, bias_k, bias_v, add_zero_attn: bool, dropout_p: float,
                                 out_proj_weight, out_proj_bias, training: bool = True, key_padding_mask=None,
                                 need_weights: bool = True, attn_mask=None, use_separate_proj_weight: bool = False,
                                 q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None,
                                 static_v=None, average_attn_weights: bool = True, is_causal: bool = False,
                                 _batch_first: bool = False):
    """PyTorch's multi-head attention on sequence-first (L, N, E) inputs (or unbatched (L, E)).

    Bool masks mark with True what may not be attended to; float masks are added to the scores.
    With ``need_weights`` the weights come from a plain softmax (a fully masked row gives nan, as in
    PyTorch); without, from SDPA's (that row gives zeros). ``_batch_first`` (nn.MultiheadAttention's,
    batched inputs only) takes and gives (N, L, E): the heads are views of the projections either
    way, so a batch-first caller need not transpose and copy its inputs and output.
    """
    batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    seq = 1 if _batch_first else 0  # the sequence's dim; the batch's is the other of the first two
    L, N, E = query.shape[seq], query.shape[1 - seq], query.shape[2]
    if E != embed_dim_to_check:
        raise RuntimeError(f"multi_head_attention_forward: expected query with embedding dimension "
                           f"{embed_dim_to_check}, got {E} (query shape {tuple(query.shape)})")
    H = num_heads
    D = E // H
    if D * H != E:
        raise RuntimeError(f"multi_head_attention_forward: embed_dim {E} is not divisible by num_heads {H}")
    if (tuple(key.shape[:2]) != tuple(value.shape[:2]) if use_separate_proj_weight
            else tuple(key.shape) != tuple(value.shape)):
        raise RuntimeError(f"multi_head_attention_forward: key of shape {tuple(key.shape)} does not match value "
                           f"of shape {tuple(value.shape)}")

    if key_padding_mask is not None and attn_mask is not None and key_padding_mask.dtype is not attn_mask.dtype:
        warnings.warn("Support for mismatched key_padding_mask and attn_mask is deprecated. Use same type for both "
                      "instead.", stacklevel=2)
    kpm = _additive_mask(key_padding_mask, "key_padding_mask", query, masked_when=True)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer "
                           "module method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and kpm is None and not need_weights:
        attn_mask = None  # the hint says attn_mask is the causal mask: it is rebuilt below
    else:
        attn_mask = _additive_mask(attn_mask, "attn_mask", query, masked_when=True)
        is_causal = False  # with a padding mask merged in, or weights wanted, the mask is used as given
    if attn_mask is not None:
        expected = (L, key.shape[seq]) if attn_mask.ndim == 2 else (N * H, L, key.shape[seq])
        if tuple(attn_mask.shape) != expected:
            raise RuntimeError(f"The shape of the {attn_mask.ndim}D attn_mask is {tuple(attn_mask.shape)}, but "
                               f"should be {expected}.")
        if attn_mask.ndim == 3:
            attn_mask = attn_mask.reshape(N, H, L, -1)  # broadcasts against (N, H, L, S) scores

    # in-projection: the packed weight is the q, k and v weights stacked along dim 0
    if use_separate_proj_weight:
        w_q, w_k, w_v = q_proj_weight, k_proj_weight, v_proj_weight
    else:
        w_q, w_k, w_v = in_proj_weight.chunk(3)
    b_q, b_k, b_v = in_proj_bias.chunk(3) if in_proj_bias is not None else (None, None, None)
    q, k, v = linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)

    if bias_k is not None and bias_v is not None:  # one more key/value position, learned
        extra = (N, 1, E) if _batch_first else (1, N, E)
        k = cat([k, bias_k.expand(*extra)], dim=seq)
        v = cat([v, bias_v.expand(*extra)], dim=seq)
        attn_mask = pad(attn_mask, (0, 1)) if attn_mask is not None else None
        kpm = pad(kpm, (0, 1)) if kpm is not None else None
    elif bias_k is not None or bias_v is not None:
        raise RuntimeError("multi_head_attention_forward: give both bias_k and bias_v, or neither")

    # heads: (seq, N, E) or (N, seq, E) -> (N, H, seq, D), views
    q = _heads(q, N, H, D, seq)
    k = _heads(k, N, H, D, seq) if static_k is None else _static(static_k, "static_k", N, H, D)
    v = _heads(v, N, H, D, seq) if static_v is None else _static(static_v, "static_v", N, H, D)
    if add_zero_attn:  # one more key/value position of zeros
        k = cat([k, k.new_zeros((N, H, 1, D))], dim=2)
        v = cat([v, v.new_zeros((N, H, 1, D))], dim=2)
        attn_mask = pad(attn_mask, (0, 1)) if attn_mask is not None else None
        kpm = pad(kpm, (0, 1)) if kpm is not None else None
    S = k.shape[2]

    mask = attn_mask
    if kpm is not None:
        if tuple(kpm.shape) != (N, S):
            raise RuntimeError(f"multi_head_attention_forward: expected key_padding_mask of shape {(N, S)} "
                               f"(batch, source length), got {tuple(kpm.shape)}")
        kpm = kpm.reshape(N, 1, 1, S)
        mask = kpm if mask is None else mask + kpm
    if is_causal:
        mask = _causal_mask(L, S, q)

    out, weights = _attend(q, k, v, mask, dropout_p if training else 0.0, 1.0 / math.sqrt(D),
                           safe=not need_weights)
    out = out.permute(0, 2, 1, 3).reshape(N, L, E) if _batch_first else out.permute(2, 0, 1, 3).reshape(L, N, E)
    out = linear(out, out_proj_weight, out_proj_bias)
    if not need_weights:
        return (out if batched else out.squeeze(1)), None
    if average_attn_weights:
        weights = weights.mean(dim=1)
    return (out, weights) if batched else (out.squeeze(1), weights.squeeze(0))


def _heads(x, N: int, H: int, D: int, seq: int):
    """(seq, N, H * D) (seq = 0) or (N, seq, H * D) (seq = 1) as a (N, H, seq, D) view."""
    if seq:
        return x.reshape(N, x.shape[1], H, D).permute(0, 2, 1, 3)
    return x.reshape(x.shape[0], N, H, D).permute(1, 2, 0, 3)


def _static(x, name: str, N: int, H: int, D: int):
    if x.ndim != 3 or x.shape[0] != N * H or x.shape[2] != D:
        raise RuntimeError(f"multi_head_attention_forward: expected {name} of shape (N * num_heads, S, head_dim) "
                           f"= ({N * H}, S, {D}), got {tuple(x.shape)}")
    return x.reshape(N, H, x.shape[1], D)
