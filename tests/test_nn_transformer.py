"""scaled_dot_product_attention, MultiheadAttention and the Transformer family against PyTorch: outputs,
attention weights, and gradients of inputs and every parameter, with weights moved by state_dict."""
import copy
import gc
import math
import warnings

import numpy as np
import pytest

import engine
import engine.nn as nn
import engine.nn.functional as F
from engine.autograd import gradcheck, gradgradcheck

torch = pytest.importorskip("torch")
TF = torch.nn.functional
F64 = dict(rtol=1e-10, atol=1e-12)
F32 = dict(rtol=1e-5, atol=1e-5)
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's, on batch_first=False


def arr(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def bool_mask(*shape, seed=0, p=0.4):
    return np.random.default_rng(seed).random(shape) < p


def to(lib, a, requires_grad=False):
    """A numpy array (or None) as a tensor of ``lib`` (engine or torch)."""
    if a is None:
        return None
    return lib.tensor(a.copy(), requires_grad=requires_grad and a.dtype.kind == "f")


def close(e, t, what, tol):
    assert tuple(e.shape) == tuple(t.shape), f"{what}: shape {tuple(e.shape)} != torch {tuple(t.shape)}"
    assert e.dtype.name == str(t.dtype).replace("torch.", ""), f"{what}: dtype {e.dtype} != torch {t.dtype}"
    np.testing.assert_allclose(e.detach().numpy(), t.detach().numpy(), equal_nan=True, err_msg=what, **tol)


def pair(cls, *args, dtype=np.float64, **kwargs):
    """The engine layer and torch's, torch's weights loaded from the engine's state_dict, whose keys
    (and their order and shapes) must be torch's exactly."""
    m = getattr(nn, cls)(*args, **kwargs)
    tm = getattr(torch.nn, cls)(*args, **kwargs)
    m = m.double() if dtype == np.float64 else m.float()
    tm = tm.double() if dtype == np.float64 else tm.float()
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    assert [tuple(v.shape) for v in sd.values()] == [tuple(v.shape) for v in tsd.values()]
    tm.load_state_dict({k: torch.tensor(v.numpy()) for k, v in sd.items()})
    return m, tm


def compare(m, tm, call, inputs, grad_inputs=None, tol=F64, seed=7):
    """``call(lib, module, *tensors)`` on both libraries; compare every output, then backpropagate
    the same random upstream gradients and compare the gradients of the inputs that take one
    (``grad_inputs``: indices; default every floating array) and of every parameter by name."""
    grad_inputs = [i for i, a in enumerate(inputs) if a is not None and a.dtype.kind == "f"] \
        if grad_inputs is None else grad_inputs
    ins = {lib: [to(lib, a, i in grad_inputs) for i, a in enumerate(inputs)] for lib in (engine, torch)}
    outs = {}
    for lib, mod in ((engine, m), (torch, tm)):
        out = call(lib, mod, *ins[lib])
        outs[lib] = [o for o in (out if isinstance(out, tuple) else (out,))]
    assert [o is None for o in outs[engine]] == [o is None for o in outs[torch]]
    pairs = [(e, t) for e, t in zip(outs[engine], outs[torch]) if t is not None]
    for k, (e, t) in enumerate(pairs):
        close(e, t, f"output {k}", tol)
    r = np.random.default_rng(seed)
    seeds = [r.standard_normal(tuple(t.shape)).astype(t.detach().numpy().dtype) for _, t in pairs]
    # nan outputs (fully masked rows) would make every gradient nan: they get a zero upstream gradient
    seeds = [np.where(np.isnan(t.detach().numpy()), 0, s) for (_, t), s in zip(pairs, seeds)]
    engine.autograd.backward([e for e, _ in pairs], [engine.tensor(s) for s in seeds])
    torch.autograd.backward([t for _, t in pairs], [torch.tensor(s) for s in seeds])
    for i in grad_inputs:
        if ins[engine][i].grad is None and ins[torch][i].grad is None:
            continue  # e.g. a mask that the is_causal hint replaced
        close(ins[engine][i].grad, ins[torch][i].grad, f"grad of input {i}", tol)
    named, tnamed = dict(m.named_parameters()), dict(tm.named_parameters())
    assert list(named) == list(tnamed)
    for name, p in named.items():
        assert (p.grad is None) == (tnamed[name].grad is None), f"grad of {name}: set in one library only"
        if p.grad is not None:
            close(p.grad, tnamed[name].grad, f"grad of {name}", tol)
    return outs


# ---- scaled_dot_product_attention ------------------------------------------------------------------------

def sdpa(lib, q, k, v, mask=None, **kw):
    fn = F.scaled_dot_product_attention if lib is engine else TF.scaled_dot_product_attention
    return fn(q, k, v, attn_mask=mask, **kw)


def check_sdpa(q, k, v, mask=None, tol=F64, mask_grad=False, **kw):
    ins = {lib: [to(lib, a, True) for a in (q, k, v)] + [to(lib, mask, mask_grad)] for lib in (engine, torch)}
    out = {lib: sdpa(lib, *ins[lib], **kw) for lib in (engine, torch)}
    close(out[engine], out[torch], "sdpa output", tol)
    g = arr(*out[torch].shape, seed=5, dtype=q.dtype)
    out[engine].backward(engine.tensor(g))
    out[torch].backward(torch.tensor(g))
    for i in range(4 if mask_grad else 3):
        close(ins[engine][i].grad, ins[torch][i].grad, f"sdpa grad of {'qkvm'[i]}", tol)
    return out[engine]


@pytest.mark.parametrize("mask", ["none", "bool", "bool_broadcast", "float", "float_grad"])
def test_sdpa_matches_torch_with_each_kind_of_mask(mask):
    q, k, v = arr(2, 3, 4, 5), arr(2, 3, 6, 5, seed=1), arr(2, 3, 6, 7, seed=2)
    m = {"none": None, "bool": bool_mask(4, 6, p=0.6), "bool_broadcast": bool_mask(2, 1, 4, 6, p=0.6),
         "float": arr(4, 6, seed=3), "float_grad": arr(2, 3, 4, 6, seed=3)}[mask]
    if m is not None and m.dtype == bool:
        m[:, ..., 0] = True  # every query row attends to something
    check_sdpa(q, k, v, m, mask_grad=mask == "float_grad")


@pytest.mark.parametrize("L, S", [(5, 5), (3, 6), (6, 3)])
def test_sdpa_is_causal_is_top_left_aligned_as_torch(L, S):
    check_sdpa(arr(2, L, 4), arr(2, S, 4, seed=1), arr(2, S, 3, seed=2), is_causal=True)


def test_sdpa_scale_unbatched_broadcast_batch_and_float32():
    check_sdpa(arr(4, 5), arr(6, 5, seed=1), arr(6, 2, seed=2), scale=0.3)  # 2-D
    check_sdpa(arr(2, 3, 4, 5), arr(1, 6, 5, seed=1), arr(1, 6, 2, seed=2))  # key/value broadcast over batch
    check_sdpa(arr(2, 3, 4, 5, dtype=np.float32), arr(2, 3, 6, 5, seed=1, dtype=np.float32),
               arr(2, 3, 6, 7, seed=2, dtype=np.float32), bool_mask(4, 6, p=0.7), tol=F32)


def test_sdpa_fully_masked_rows_give_zeros_as_torch():
    m = bool_mask(4, 6, p=0.7)
    m[1] = False  # query 1 may attend to nothing
    fm = np.where(m, 0.0, -np.inf)
    for mask in (m, fm):
        out = check_sdpa(arr(2, 4, 5), arr(2, 6, 5, seed=1), arr(2, 6, 3, seed=2), mask)
        assert not np.isnan(out.detach().numpy()).any() and not out.detach().numpy()[:, 1].any()


def test_sdpa_grouped_query_attention():
    check_sdpa(arr(2, 6, 4, 5), arr(2, 2, 3, 5, seed=1), arr(2, 2, 3, 4, seed=2), enable_gqa=True)
    with pytest.raises(RuntimeError, match="multiple of the number of key/value heads"):
        F.scaled_dot_product_attention(*(engine.tensor(a) for a in (arr(1, 5, 2, 3), arr(1, 2, 2, 3),
                                                                     arr(1, 2, 2, 3))), enable_gqa=True)


def test_sdpa_gradcheck_and_double_backward():
    q, k, v = (engine.tensor(arr(1, 2, 3, 2, seed=s), requires_grad=True) for s in range(3))
    mask = engine.tensor(arr(3, 3, seed=4), requires_grad=True)
    bmask = engine.tensor(bool_mask(3, 3, p=0.6) | np.eye(3, dtype=bool))
    assert gradcheck(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m, scale=0.7), (q, k, v, mask))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, bmask), (q, k, v))
    assert gradcheck(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True), (q, k, v))
    assert gradgradcheck(lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, m), (q, k, v, mask))


def test_sdpa_dropout_drops_weights_and_keeps_the_mean():
    engine.manual_seed(0)
    q, k = engine.tensor(arr(200, 4, 3)), engine.tensor(arr(200, 8, 3, seed=1))
    ones = engine.ones(200, 8, 1, dtype=engine.float64)  # out = sum of the (dropped, rescaled) weights
    out = F.scaled_dot_product_attention(q, k, ones, dropout_p=0.5).numpy()
    assert (out != 1).mean() > 0.9 and abs(out.mean() - 1) < 0.05
    kept = F.scaled_dot_product_attention(q, k, ones, dropout_p=0.0).numpy()
    np.testing.assert_allclose(kept, 1.0)


def test_sdpa_bad_arguments_say_what_is_wrong():
    q = engine.tensor(arr(2, 3, 4))
    with pytest.raises(RuntimeError, match="attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=engine.zeros(3, 3, dtype=engine.float64), is_causal=True)
    with pytest.raises(RuntimeError, match=r"query \(2, 3, 4\), key \(2, 3, 5\).*same last dim"):
        F.scaled_dot_product_attention(q, engine.tensor(arr(2, 3, 5)), q)
    with pytest.raises(RuntimeError, match="same dtype"):
        F.scaled_dot_product_attention(q, q.float(), q)
    with pytest.raises(RuntimeError, match=r"attn_mask of shape \(2, 1, 3, 3\) does not broadcast to the "
                                           r"attention scores' shape \(2, 3, 3\)"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=engine.zeros(2, 1, 3, 3, dtype=engine.float64))
    with pytest.raises(RuntimeError, match="attn_mask dtype to be bool or to match query dtype"):
        F.scaled_dot_product_attention(q, q, q, attn_mask=engine.zeros(3, 3))


# ---- MultiheadAttention ----------------------------------------------------------------------------------

def mha_call(**kw):
    """Self-attention by default; ``cross`` uses inputs 1 and 2 as key and value."""
    def call(lib, m, q, k=None, v=None, kpm=None, am=None):
        k = q if k is None else k
        v = k if v is None else v
        return m(q, k, v, key_padding_mask=kpm, attn_mask=am, **kw)
    return call


def masks(kind, N=2, L=4, S=4, H=2, seed=0):
    """(key_padding_mask, attn_mask) of a kind; bool masks leave every row something to attend to."""
    kpm = bool_mask(N, S, seed=seed)
    kpm[:, 0] = False
    am = bool_mask(L, S, seed=seed + 1)
    am[:, -1] = False
    return {"none": (None, None), "bool_attn": (None, am), "float_attn_3d": (None, arr(N * H, L, S, seed=seed)),
            "bool_kpm": (kpm, None), "float_kpm": (arr(N, S, seed=seed), None),
            "both_bool": (kpm, am), "both_float": (arr(N, S, seed=seed), arr(L, S, seed=seed + 1))}[kind]


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["none", "bool_attn", "float_attn_3d", "bool_kpm", "float_kpm", "both_bool",
                                  "both_float"])
@pytest.mark.parametrize("need_weights, average", [(True, True), (True, False), (False, True)])
def test_mha_self_attention_matches_torch(batch_first, kind, need_weights, average):
    m, tm = pair("MultiheadAttention", 8, 2, batch_first=batch_first)
    x = arr(2, 4, 8) if batch_first else arr(4, 2, 8)
    kpm, am = masks(kind)
    outs = compare(m, tm, mha_call(need_weights=need_weights, average_attn_weights=average), [x, None, None, kpm, am])
    w = outs[engine][1]
    assert (w is None) == (not need_weights)
    if w is not None:
        assert tuple(w.shape) == ((2, 4, 4) if average else (2, 2, 4, 4))


@pytest.mark.parametrize("batch_first", [False, True])
def test_mha_cross_attention_kdim_vdim_bias_kv_zero_attn(batch_first):
    m, tm = pair("MultiheadAttention", 8, 4, kdim=6, vdim=5, add_bias_kv=True, add_zero_attn=True,
                 batch_first=batch_first)
    assert m.in_proj_weight is None and tuple(m.q_proj_weight.shape) == (8, 8) and tuple(m.bias_k.shape) == (1, 1, 8)
    shape = (lambda n, l, e: (n, l, e)) if batch_first else (lambda n, l, e: (l, n, e))
    q, k, v = arr(*shape(2, 3, 8)), arr(*shape(2, 5, 6), seed=1), arr(*shape(2, 5, 5), seed=2)
    for kind in ("none", "both_bool", "float_attn_3d"):
        kpm, am = masks(kind, L=3, S=5, H=4)
        for need_weights in (True, False):
            m.zero_grad(), tm.zero_grad()
            compare(m, tm, mha_call(need_weights=need_weights), [q, k, v, kpm, am])


def test_mha_no_bias_shared_key_value_and_unbatched():
    m, tm = pair("MultiheadAttention", 6, 3, bias=False)
    assert m.in_proj_bias is None and m.out_proj.bias is None
    compare(m, tm, mha_call(), [arr(4, 2, 6), arr(5, 2, 6, seed=1)])  # key is value: encoder-decoder attention
    m.zero_grad(), tm.zero_grad()
    kpm = np.array([False, True, False, False, True])
    for am in (None, arr(3, 4, 5, seed=2)):  # unbatched: (L, E) with (S,) padding and (H, L, S) mask
        m.zero_grad(), tm.zero_grad()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            outs = compare(m, tm, mha_call(), [arr(4, 6), arr(5, 6, seed=1), None, kpm, am])
        mismatched = [str(w.message) for w in seen if "mismatched key_padding_mask" in str(w.message)]
        assert len(mismatched) == (0 if am is None else 2)  # bool padding with a float mask: both libraries warn
        assert tuple(outs[engine][0].shape) == (4, 6) and tuple(outs[engine][1].shape) == (4, 5)


def test_mha_is_causal_hint_and_missing_mask():
    m, tm = pair("MultiheadAttention", 8, 2)
    causal = np.triu(np.full((4, 4), -np.inf), 1)
    for need_weights in (False, True):
        m.zero_grad(), tm.zero_grad()
        compare(m, tm, mha_call(need_weights=need_weights, is_causal=True), [arr(4, 2, 8), None, None, None, causal])
    x = engine.tensor(arr(4, 2, 8))
    with pytest.raises(RuntimeError, match="Need attn_mask if specifying the is_causal hint"):
        m(x, x, x, is_causal=True)


def test_mha_fully_masked_rows_nan_with_weights_zeros_without_as_torch():
    m, tm = pair("MultiheadAttention", 8, 2)
    am = np.zeros((4, 4), dtype=bool)
    am[1] = True  # query 1 may attend to nothing
    outs = compare(m, tm, mha_call(need_weights=True), [arr(4, 2, 8), None, None, None, am])
    assert np.isnan(outs[engine][0].detach().numpy()[1]).all()
    m.zero_grad(), tm.zero_grad()
    outs = compare(m, tm, mha_call(need_weights=False), [arr(4, 2, 8), None, None, None, am])
    np.testing.assert_allclose(outs[engine][0].detach().numpy()[1], np.broadcast_to(m.out_proj.bias.detach().numpy(), (2, 8)))


def test_mha_dropout_only_in_training_and_float32():
    m, tm = pair("MultiheadAttention", 8, 2, dropout=0.5, batch_first=True)
    m.eval(), tm.eval()
    compare(m, tm, mha_call(), [arr(2, 4, 8)])
    m.train()
    x = engine.tensor(arr(2, 4, 8))
    a, b = m(x, x, x)[1], m(x, x, x)[1]
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())  # dropped weights differ from call to call
    m32, tm32 = pair("MultiheadAttention", 8, 2, dtype=np.float32)
    compare(m32, tm32, mha_call(), [arr(4, 2, 8, dtype=np.float32), None, None, *masks("both_bool")], tol=F32)


def test_mha_gradcheck():
    m = nn.MultiheadAttention(4, 2, add_bias_kv=True).double()
    x, y = (engine.tensor(arr(2, 1, 4, seed=s), requires_grad=True) for s in (0, 1))
    am = engine.tensor(arr(2, 2, seed=2))

    def fn(q, kv, w, b, ow, bk):
        return F.multi_head_attention_forward(q, kv, kv, 4, 2, w, b, bk, m.bias_v, False, 0.0, ow, m.out_proj.bias,
                                              attn_mask=am, average_attn_weights=False)
    assert gradcheck(fn, (x, y, m.in_proj_weight, m.in_proj_bias, m.out_proj.weight, m.bias_k))


def test_mha_init_and_state_dict_keys_as_torch():
    engine.manual_seed(0)
    m = nn.MultiheadAttention(64, 4)
    assert list(m.state_dict()) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert not m.in_proj_bias.detach().numpy().any() and not m.out_proj.bias.detach().numpy().any()
    w, bound = m.in_proj_weight.detach().numpy(), math.sqrt(6 / (64 + 3 * 64))  # xavier_uniform_ on (3E, E)
    assert np.abs(w).max() <= bound and abs(w.std() - bound / math.sqrt(3)) < 0.01
    assert type(m.out_proj).__name__ == "NonDynamicallyQuantizableLinear"
    assert list(nn.MultiheadAttention(8, 2, kdim=3, add_bias_kv=True).state_dict()) == list(
        torch.nn.MultiheadAttention(8, 2, kdim=3, add_bias_kv=True).state_dict())


def test_mha_wrong_shapes_name_the_layer():
    m = nn.MultiheadAttention(8, 2, kdim=6).double()
    q, k, v = engine.tensor(arr(4, 2, 8)), engine.tensor(arr(5, 2, 6)), engine.tensor(arr(5, 2, 8))
    with pytest.raises(RuntimeError, match=r"MultiheadAttention\(embed_dim=8, num_heads=2\): expected query of "
                                           r"shape \(L, N, E\) or unbatched \(L, E\) with E = embed_dim = 8, got "
                                           r"query of shape \(4, 2, 7\)"):
        m(engine.tensor(arr(4, 2, 7)), k, v)
    with pytest.raises(RuntimeError, match=r"expected key .* kdim = 6, got key of shape \(5, 2, 8\)"):
        m(q, v, v)
    with pytest.raises(RuntimeError, match=r"shape of the 2D attn_mask is \(3, 3\), but should be \(4, 5\)"):
        m(q, k, v, attn_mask=engine.zeros(3, 3, dtype=engine.float64))
    with pytest.raises(RuntimeError, match=r"key_padding_mask of shape \(2, 5\)"):
        m(q, k, v, key_padding_mask=engine.zeros(2, 4, dtype=engine.bool))
    with pytest.raises(ValueError, match="divisible by num_heads"):
        nn.MultiheadAttention(8, 3)


# ---- encoder and decoder layers ------------------------------------------------------------------------------

def seq(batch_first, n, l, e, seed=0):
    return arr(n, l, e, seed=seed) if batch_first else arr(l, n, e, seed=seed)


def encoder_call(lib, m, src, mask=None, kpm=None):
    return m(src, mask, kpm)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(batch_first, norm_first, activation):
    m, tm = pair("TransformerEncoderLayer", 8, 2, dim_feedforward=16, dropout=0.0, activation=activation,
                 batch_first=batch_first, norm_first=norm_first)
    kpm, am = masks("both_bool", L=5, S=5)
    compare(m, tm, encoder_call, [seq(batch_first, 2, 5, 8), am, kpm])


def test_encoder_layer_callable_activation_eval_mode_float_masks_no_bias():
    m, tm = pair("TransformerEncoderLayer", 8, 2, 16, dropout=0.3, bias=False, layer_norm_eps=1e-3)
    m.activation, tm.activation = F.silu, TF.silu  # a callable activation
    m.eval(), tm.eval()
    kpm, am = masks("both_float", L=5, S=5)
    compare(m, tm, encoder_call, [seq(False, 2, 5, 8), am, kpm])
    assert [n for n, _ in m.named_children()] == [n for n, _ in tm.named_children()]


def test_encoder_stack_deep_copies_layers_and_applies_the_final_norm():
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    enc = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(8))
    a, b = enc.layers[0], enc.layers[1]
    assert a is not layer and a.linear1.weight is not b.linear1.weight
    np.testing.assert_array_equal(a.linear1.weight.detach().numpy(), layer.linear1.weight.detach().numpy())
    tenc = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), 2,
                                       norm=torch.nn.LayerNorm(8))
    enc.double(), tenc.double()
    assert list(enc.state_dict()) == list(tenc.state_dict())
    tenc.load_state_dict({k: torch.tensor(v.numpy()) for k, v in enc.state_dict().items()})
    kpm = np.where(masks("bool_kpm", L=5, S=5)[0], -np.inf, 0.0)
    causal = np.triu(np.full((5, 5), -np.inf), 1)
    compare(enc, tenc, encoder_call, [seq(False, 2, 5, 8), causal, kpm], grad_inputs=[0])
    enc.zero_grad(), tenc.zero_grad()
    compare(enc, tenc, lambda lib, m, src: m(src), [arr(5, 8)])  # unbatched


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_with_memory_masks_matches_torch(batch_first, norm_first):
    m, tm = pair("TransformerDecoderLayer", 8, 2, 16, dropout=0.0, activation="gelu", batch_first=batch_first,
                 norm_first=norm_first)
    tgt_kpm, tgt_mask = masks("both_bool", L=4, S=4, seed=1)
    mem_kpm, mem_mask = masks("both_float", L=4, S=6, seed=2)

    def call(lib, m, tgt, mem, tm_, mm, tk, mk):
        return m(tgt, mem, tgt_mask=tm_, memory_mask=mm, tgt_key_padding_mask=tk, memory_key_padding_mask=mk)
    compare(m, tm, call, [seq(batch_first, 2, 4, 8), seq(batch_first, 2, 6, 8, seed=3), tgt_mask, mem_mask,
                          tgt_kpm, mem_kpm])


def test_decoder_stack_with_causal_mask_matches_torch():
    dec = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2, norm=nn.LayerNorm(8))
    tdec = torch.nn.TransformerDecoder(torch.nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0), 2,
                                       norm=torch.nn.LayerNorm(8))
    dec.double(), tdec.double()
    assert list(dec.state_dict()) == list(tdec.state_dict())
    tdec.load_state_dict({k: torch.tensor(v.numpy()) for k, v in dec.state_dict().items()})
    causal = np.triu(np.full((4, 4), -np.inf), 1)

    def call(lib, m, tgt, mem, mask, mk):
        return m(tgt, mem, tgt_mask=mask, memory_key_padding_mask=mk)
    compare(dec, tdec, call, [arr(4, 2, 8), arr(6, 2, 8, seed=1), causal, masks("bool_kpm", S=6)[0]])


def test_layers_wrong_d_model_and_bad_activation():
    enc = nn.TransformerEncoderLayer(8, 2, 16)
    with pytest.raises(RuntimeError, match=r"TransformerEncoderLayer\(d_model=8, nhead=2\): expected src of shape "
                                           r"\(L, N, E\) or unbatched \(L, E\) with E = d_model = 8, got src of "
                                           r"shape \(5, 2, 6\)"):
        enc(engine.zeros(5, 2, 6))
    dec = nn.TransformerDecoderLayer(8, 2, 16, batch_first=True)
    with pytest.raises(RuntimeError, match=r"TransformerDecoderLayer\(d_model=8, nhead=2\): expected memory of "
                                           r"shape \(N, L, E\)"):
        dec(engine.zeros(2, 5, 8), engine.zeros(2, 5, 4))
    with pytest.raises(RuntimeError, match="activation should be relu/gelu"):
        nn.TransformerEncoderLayer(8, 2, activation="tanh")


# ---- Transformer ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_first", [False, True])
def test_transformer_matches_torch(batch_first):
    kw = dict(d_model=8, nhead=2, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=16, dropout=0.0,
              batch_first=batch_first)
    m, tm = pair("Transformer", **kw)
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(4, dtype=engine.float64).numpy()
    src_kpm, _ = masks("bool_kpm", S=5)
    mem_kpm = src_kpm.copy()

    def call(lib, m, src, tgt, tmask, skpm, mkpm):
        return m(src, tgt, tgt_mask=tmask, src_key_padding_mask=skpm, memory_key_padding_mask=mkpm)
    compare(m, tm, call, [seq(batch_first, 2, 5, 8), seq(batch_first, 2, 4, 8, seed=1), tgt_mask, src_kpm, mem_kpm])


def test_transformer_norm_first_float32_and_eval():
    m, tm = pair("Transformer", 8, 2, 1, 1, 16, dropout=0.2, norm_first=True, activation="gelu", dtype=np.float32)
    m.eval(), tm.eval()
    mask = nn.Transformer.generate_square_subsequent_mask(3).numpy()
    assert mask.dtype == np.float32
    compare(m, tm, lambda lib, m, s, t, mk: m(s, t, tgt_mask=mk, tgt_is_causal=True),
            [arr(5, 2, 8, dtype=np.float32), arr(3, 2, 8, seed=1, dtype=np.float32), mask], tol=F32)


def test_generate_square_subsequent_mask_and_transformer_init():
    for dtype, tdtype in ((None, None), (engine.float64, torch.float64)):
        e = nn.Transformer.generate_square_subsequent_mask(4, dtype=dtype)
        t = torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=tdtype)
        close(e, t, "mask", F64)
    engine.manual_seed(0)
    m = nn.Transformer(16, 2, 1, 1, 32)
    w = m.encoder.layers[0].linear1.weight.detach().numpy()  # xavier_uniform_ on every matrix, as torch
    assert np.abs(w).max() <= math.sqrt(6 / 48) and np.abs(w).max() > 0.9 * math.sqrt(6 / 48)
    assert isinstance(m.encoder.norm, nn.LayerNorm) and isinstance(m.decoder.norm, nn.LayerNorm)
    assert list(m.state_dict()) == list(torch.nn.Transformer(16, 2, 1, 1, 32).state_dict())


def test_transformer_shape_errors_name_the_layer():
    m = nn.Transformer(8, 2, 1, 1, 16)
    with pytest.raises(RuntimeError, match=r"Transformer\(d_model=8, nhead=2\): expected tgt .* got tgt of shape "
                                           r"\(4, 2, 6\)"):
        m(engine.zeros(5, 2, 8), engine.zeros(4, 2, 6))
    with pytest.raises(RuntimeError, match=r"batch number of src and tgt must be equal, got src of shape \(5, 2, 8\) "
                                           r"and tgt of shape \(4, 3, 8\)"):
        m(engine.zeros(5, 2, 8), engine.zeros(4, 3, 8))


def test_deepcopy_of_a_layer_is_independent():
    layer = nn.TransformerEncoderLayer(8, 2, 16)
    twin = copy.deepcopy(layer)
    assert list(twin.state_dict()) == list(layer.state_dict())
    with engine.no_grad():
        twin.self_attn.in_proj_weight.fill_(0.0)
    assert layer.self_attn.in_proj_weight.detach().numpy().any() and twin.self_attn.in_proj_weight.requires_grad


def test_a_training_step_frees_its_graph_without_the_garbage_collector():
    m = nn.Transformer(8, 2, 1, 1, 16, batch_first=True)
    x = engine.randn(2, 3, 8, requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(3)
    gc.collect()
    for _ in range(2):
        out = m(x, x, tgt_mask=mask, src_key_padding_mask=engine.tensor([[False, False, True]] * 2))
        out.sum().backward()
        del out
        assert gc.collect() == 0
