"""LSTM and GRU kernels against torch.nn.LSTM / torch.nn.GRU and float64 finite differences."""
import itertools

import numpy as np
import pytest
import torch

from bigdl_py.kernels import rnn
from bigdl_py.testing import numeric_grad, projection

GATES = {"lstm": 4, "gru": 3}
# (N, T, I, H): batch 1, sequence length 1, odd sizes, H = I = 1.
SHAPES = [(1, 4, 3, 5), (3, 1, 4, 5), (2, 5, 3, 7), (4, 3, 1, 1), (5, 9, 6, 4)]


def make(kind, n, t, i, h, dtype=np.float32, initial_state=True, scale=1.0, seed=0):
    """Inputs, initial states (h0, c0; c0 None for GRU) and weights of one layer."""
    rng = np.random.default_rng(seed)
    g = GATES[kind]
    x = (scale * rng.standard_normal((n, t, i))).astype(dtype)
    h0, c0 = ((rng.standard_normal((n, h)) if initial_state else np.zeros((n, h))).astype(dtype)
              for _ in range(2))
    weights = [(0.5 * rng.standard_normal(s)).astype(dtype)
               for s in ((g * h, i), (g * h, h), (g * h,), (g * h,))]
    return x, h0, (c0 if kind == "lstm" else None), weights


def output_grads(kind, n, t, h, mode, dtype=np.float32):
    """grad_out and final-state gradients: every step, the last step only, or every
    step plus dL/dh_T (and dL/dc_T)."""
    grad_out = projection((n, t, h), seed=1).astype(dtype)
    if mode == "last":
        grad_out[:, :-1] = 0
    if mode != "states":
        return grad_out, None, None
    grad_c = projection((n, h), seed=3).astype(dtype) if kind == "lstm" else None
    return grad_out, projection((n, h), seed=2).astype(dtype), grad_c


def ours(kind, x, h0, c0, weights, grad_out, grad_h, grad_c):
    """(forward results, gradients) in torch's order: x, h0, [c0], w_ih, w_hh, b_ih, b_hh."""
    if kind == "lstm":
        out, h_t, c_t, cache = rnn.lstm_forward(x, h0, c0, *weights)
        return (out, h_t, c_t), rnn.lstm_backward(cache, grad_out, grad_h, grad_c)
    out, h_t, cache = rnn.gru_forward(x, h0, *weights)
    return (out, h_t), rnn.gru_backward(cache, grad_out, grad_h)


def reference(kind, x, h0, c0, weights, grad_out, grad_h, grad_c):
    """The same through torch.nn.LSTM / torch.nn.GRU with our weights copied in."""
    i, h = x.shape[2], h0.shape[1]
    dtype = torch.float64 if x.dtype == np.float64 else torch.float32
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](i, h, batch_first=True)
    layer = layer.to(dtype)
    params = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    with torch.no_grad():
        for p, w in zip(params, weights):
            p.copy_(torch.from_numpy(w))
    xt = torch.tensor(x, requires_grad=True)
    states = [torch.tensor(s[None], requires_grad=True) for s in (h0, c0) if s is not None]
    out, final = layer(xt, tuple(states) if kind == "lstm" else states[0])
    finals = [f[0] for f in (final if kind == "lstm" else (final,))]
    loss = (out * torch.from_numpy(grad_out)).sum()
    for f, g in zip(finals, (grad_h, grad_c)):
        if g is not None:
            loss = loss + (f * torch.from_numpy(g)).sum()
    loss.backward()
    results = [out] + finals
    grads = [xt.grad] + [s.grad[0] for s in states] + [p.grad for p in params]
    return [r.detach().numpy() for r in results], [g.numpy() for g in grads]


# float32 tolerances with ~10x margin over the worst error seen on these cases
# (forward 2.4e-7, gradients 3.8e-6 absolute); gradients sum over steps and rows.
FWD_TOL = dict(rtol=1e-5, atol=2e-6)
GRAD_TOL = dict(rtol=1e-4, atol=4e-5)


def compare(kind, x, h0, c0, weights, mode, fwd_tol=FWD_TOL, grad_tol=GRAD_TOL):
    n, t, _ = x.shape
    grads = output_grads(kind, n, t, h0.shape[1], mode, x.dtype)
    results, dgrads = ours(kind, x, h0, c0, weights, *grads)
    ref_results, ref_grads = reference(kind, x, h0, c0, weights, *grads)
    assert len(results) == len(ref_results) and len(dgrads) == len(ref_grads)
    for got, want, tol in zip(list(results) + list(dgrads), ref_results + ref_grads,
                              [fwd_tol] * len(results) + [grad_tol] * len(dgrads)):
        assert got.dtype == x.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("n,t,i,h", SHAPES)
@pytest.mark.parametrize("initial_state", [False, True])
@pytest.mark.parametrize("mode", ["all", "last", "states"])
def test_outputs_states_and_all_gradients_match_torch(kind, n, t, i, h, initial_state, mode):
    x, h0, c0, weights = make(kind, n, t, i, h, initial_state=initial_state)
    compare(kind, x, h0, c0, weights, mode)


# LSTM batches of several blocks (_batch_blocks: 32 + 8 rows; 4 x 16), H on gemm's
# micro-kernels (32) and on BLAS (20)
@pytest.mark.parametrize("n,t,i,h", [(40, 3, 5, 32), (64, 2, 16, 20)])
@pytest.mark.parametrize("mode", ["all", "states"])
def test_lstm_over_several_batch_blocks_matches_torch(n, t, i, h, mode):
    assert len(rnn._batch_blocks(n)) > 1
    x, h0, c0, weights = make("lstm", n, t, i, h)
    compare("lstm", x, h0, c0, weights, mode)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 31, 32, 33, 40, 64, 100, 128, 1000])
def test_lstm_batch_blocks_cover_the_rows_in_order_in_whole_row_blocks(n):
    bounds = rnn._batch_blocks(n)
    assert bounds[0][0] == 0 and bounds[-1][1] == n and len(bounds) <= rnn._LSTM_MAX_BLOCKS
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all((r1 - r0) % rnn._LSTM_BLOCK_ROWS == 0 for r0, r1 in bounds[:-1])
    assert len(bounds) == 1 or min(r1 - r0 for r0, r1 in bounds) > 0


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_saturated_gates_match_torch(kind):
    x, h0, c0, weights = make(kind, 3, 6, 4, 5, scale=40.0)
    compare(kind, x, h0, c0, weights, "all")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float64_matches_torch_to_round_off(kind):
    # float64 must use exact tanh/sigmoid, not the float32 approximation (error ~3e-7).
    x, h0, c0, weights = make(kind, 2, 4, 3, 5, dtype=np.float64)
    exact = dict(rtol=1e-10, atol=1e-12)
    compare(kind, x, h0, c0, weights, "states", fwd_tol=exact, grad_tol=exact)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("wide", [False, True], ids=["256_bit", "512_bit"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_projections_on_gemm_micro_kernels_match_torch_at_either_vector_width(kind, wide, dtype, monkeypatch):
    # G*H = 64 (LSTM) and 48 (GRU), multiples of 16: both projections run on gemm's
    # micro-kernels; 19 rows per step are a full block of 16 (or 6) and a padded rest
    monkeypatch.setattr(rnn.gemm, "WIDE", wide)
    x, h0, c0, weights = make(kind, 19, 3, 5, 16, dtype=dtype)
    tol = (FWD_TOL, GRAD_TOL) if dtype == np.float32 else (dict(rtol=1e-10, atol=1e-12),) * 2
    compare(kind, x, h0, c0, weights, "states", *tol)


LSTM_ARGS = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"]
GRU_ARGS = ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]


@pytest.mark.parametrize("kind,wrt",
                         [("lstm", a) for a in LSTM_ARGS] + [("gru", a) for a in GRU_ARGS])
def test_backward_matches_finite_differences(kind, wrt):
    x, h0, c0, weights = make(kind, 2, 3, 2, 2, dtype=np.float64, seed=4)
    names = LSTM_ARGS if kind == "lstm" else GRU_ARGS
    inputs = dict(zip(names, [x, h0] + ([c0] if kind == "lstm" else []) + weights))
    grads = output_grads(kind, 2, 3, 2, "states", np.float64)

    def loss(v):
        args = dict(inputs, **{wrt: v})
        state = (args["c0"],) if kind == "lstm" else ()
        forward = rnn.lstm_forward if kind == "lstm" else rnn.gru_forward
        results = forward(args["x"], args["h0"], *state, args["w_ih"], args["w_hh"],
                          args["b_ih"], args["b_hh"])[:-1]
        return sum(np.sum(r * g) for r, g in zip(results, grads) if g is not None)

    _, dgrads = ours(kind, x, h0, c0, weights, *grads)
    analytic = dict(zip(names, dgrads))[wrt]
    # eps 1e-5: truncation error ~eps^2 stays far below the tolerance, round-off ~1e-11.
    numeric = numeric_grad(loss, inputs[wrt], eps=1e-5)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_leaves_cache_and_caller_gradients_untouched(kind):
    x, h0, c0, weights = make(kind, 2, 4, 3, 5)
    grad_out, grad_h, grad_c = output_grads(kind, 2, 4, 5, "states")
    keep = [g.copy() for g in (grad_out, grad_h, grad_c) if g is not None]
    _, first = ours(kind, x, h0, c0, weights, grad_out, grad_h, grad_c)
    if kind == "lstm":
        cache = rnn.lstm_forward(x, h0, c0, *weights)[3]
        again = [rnn.lstm_backward(cache, grad_out, grad_h, grad_c) for _ in range(2)]
    else:
        cache = rnn.gru_forward(x, h0, *weights)[2]
        again = [rnn.gru_backward(cache, grad_out, grad_h) for _ in range(2)]
    for a, b, c in zip(first, *again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    for g, k in zip([g for g in (grad_out, grad_h, grad_c) if g is not None], keep):
        np.testing.assert_array_equal(g, k)
    # Fresh arrays: the layer accumulates each one into its own gradient buffer.
    for a, b in itertools.combinations(again[0], 2):
        assert not np.shares_memory(a, b)


def test_gradient_of_the_last_output_only_equals_gradient_of_h_T():
    # A layer returning only the last output may pass either form.
    x, h0, c0, weights = make("lstm", 3, 5, 2, 4)
    grad_out, _, _ = output_grads("lstm", 3, 5, 4, "last")
    cache = rnn.lstm_forward(x, h0, c0, *weights)[3]
    via_out = rnn.lstm_backward(cache, grad_out)
    via_h = rnn.lstm_backward(cache, np.zeros_like(grad_out), np.ascontiguousarray(grad_out[:, -1]))
    for a, b in zip(via_out, via_h):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_empty_batch_gives_empty_outputs_and_zero_weight_gradients(kind):
    # An empty Spark partition still runs the layer.
    x, h0, c0, weights = make(kind, 0, 3, 4, 5)
    results, grads = ours(kind, x, h0, c0, weights, np.zeros((0, 3, 5), F32), None, None)
    assert [r.shape for r in results] == [(0, 3, 5)] + [(0, 5)] * (len(results) - 1)
    n_state = len(results) - 1
    assert [g.shape for g in grads[:1 + n_state]] == [(0, 3, 4)] + [(0, 5)] * n_state
    for g, w in zip(grads[1 + n_state:], weights):
        assert g.shape == w.shape and not g.any()


def _lstm_call(**bad):
    x, h0, c0, weights = make("lstm", 2, 3, 4, 5)
    args = dict(x=x, h0=h0, c0=c0, w_ih=weights[0], w_hh=weights[1], b_ih=weights[2],
                b_hh=weights[3])
    args.update(bad)
    return lambda: rnn.lstm_forward(**args)


def _gru_call(**bad):
    x, h0, _, weights = make("gru", 2, 3, 4, 5)
    args = dict(x=x, h0=h0, w_ih=weights[0], w_hh=weights[1], b_ih=weights[2], b_hh=weights[3])
    args.update(bad)
    return lambda: rnn.gru_forward(**args)


F32 = np.float32


@pytest.mark.parametrize("name,call", [
    ("x", _lstm_call(x=np.zeros((2, 4), F32))),
    ("x", _lstm_call(x=np.zeros((2, 3, 4), np.int64))),
    ("x", _lstm_call(x=np.zeros((2, 0, 4), F32))),
    ("x", _lstm_call(x=np.zeros((2, 4, 3), F32).transpose(0, 2, 1))),
    ("x", _lstm_call(x=[[[0.0] * 4] * 3] * 2)),
    ("h0", _lstm_call(h0=np.zeros((3, 5), F32))),
    ("c0", _lstm_call(c0=np.zeros((2, 4), F32))),
    ("c0", _lstm_call(c0=np.zeros((2, 5), np.float64))),
    ("w_ih", _lstm_call(w_ih=np.zeros((20, 3), F32))),
    ("w_ih", _lstm_call(w_ih=np.zeros((20, 4), np.float64))),
    ("w_hh", _lstm_call(w_hh=np.zeros((15, 5), F32))),
    ("w_hh", _lstm_call(w_hh=np.zeros((0, 0), F32))),
    ("b_ih", _lstm_call(b_ih=np.zeros(19, F32))),
    ("b_hh", _lstm_call(b_hh=np.zeros((1, 20), F32))),
    ("x", _gru_call(x=np.zeros((2, 0, 4), F32))),
    ("h0", _gru_call(h0=np.zeros((2, 6), F32))),
    ("w_hh", _gru_call(w_hh=np.zeros((20, 5), F32))),
    ("b_hh", _gru_call(b_hh=np.zeros(20, F32))),
])
def test_bad_forward_arguments_name_the_argument(name, call):
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        call()


def _lstm_cache():
    x, h0, c0, weights = make("lstm", 2, 3, 4, 5)
    return rnn.lstm_forward(x, h0, c0, *weights)[3]


def _gru_cache():
    x, h0, _, weights = make("gru", 2, 3, 4, 5)
    return rnn.gru_forward(x, h0, *weights)[2]


GOOD_GRAD_OUT = np.zeros((2, 3, 5), F32)


@pytest.mark.parametrize("name,backward,args", [
    ("grad_out", rnn.lstm_backward, dict(grad_out=np.zeros((2, 4, 5), F32))),
    ("grad_out", rnn.lstm_backward, dict(grad_out=np.zeros((2, 3, 5), np.float64))),
    ("grad_hT", rnn.lstm_backward, dict(grad_hT=np.zeros((5, 2), F32))),
    ("grad_cT", rnn.lstm_backward, dict(grad_cT=np.zeros((2, 5), np.float64))),
    ("cache", rnn.lstm_backward, dict(cache=None)),
    ("grad_hT", rnn.gru_backward, dict(grad_hT=np.zeros((2, 4), F32))),
    ("cache", rnn.gru_backward, dict(cache="lstm")),
])
def test_bad_backward_arguments_name_the_argument(name, backward, args):
    own_cache = _lstm_cache() if backward is rnn.lstm_backward else _gru_cache()
    if args.get("cache") == "lstm":  # a cache from the other cell
        args = dict(args, cache=_lstm_cache())
    call = dict(dict(cache=own_cache, grad_out=GOOD_GRAD_OUT), **args)
    with pytest.raises(ValueError, match=f"^{name}: expected"):
        backward(**call)
