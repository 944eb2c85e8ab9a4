"""Single-layer unidirectional LSTM and GRU over batch-first sequences, with BPTT.

Weights, biases and gate orders are PyTorch's (LSTM i, f, g, o; GRU r, z, n), so
torch.nn.LSTM / torch.nn.GRU weights load unchanged. The work is GEMMs (gemm's
micro-kernels on the transposed weights where G*H is a multiple of 16, else BLAS) plus
one numba kernel per time step: the recurrent projection is one (N, H) @ (H, G*H) GEMM
per step, the input projection one GEMM over all steps (GRU) or one per step beside the
recurrent one (LSTM, all steps in one jitted loop), and in backward dx and every weight
gradient is one BLAS GEMM over all steps. The LSTM runs in batch blocks, one task each
over the kernel threads (its GEMMs over a block's rows, the weight gradients the
blocks' partials added in order). Internally buffers are time-major,
(T, N, G, H) for gates, so every per-step slice is contiguous for BLAS and every
gate of a batch row is a contiguous run for the vectorised loops.
"""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from . import gemm
from ._checks import check_array, check_same_dtype, check_shape
from .parallel import run_tasks, sum_in_order

# error_model="numpy" drops the ZeroDivisionError branch of every float division,
# which otherwise stops LLVM from vectorising the gate loops; nogil lets the LSTM's
# batch blocks run on several threads at once.
_JIT = dict(cache=True, nogil=True, error_model="numpy")

# float32 tanh as Eigen's rational approximation (generic_fast_tanh_float, error below
# 3e-7): plain arithmetic vectorises where a libm call does not (libm tanh and exp made
# the forward 5x slower). float64 keeps the exact libm functions.
_CLAMP = np.float32(7.90531110763549805)
_A1, _A3, _A5, _A7, _A9, _A11, _A13 = (np.float32(c) for c in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_B0, _B2, _B4, _B6 = (np.float32(c) for c in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))
_HALF = np.float32(0.5)
# A float32 one keeps float32 arithmetic in float32 and is exact in float64.
_ONE = np.float32(1.0)


def _tanh_float32(v):
    c = min(max(v, -_CLAMP), _CLAMP)
    c2 = c * c
    p = ((((((_A13 * c2 + _A11) * c2 + _A9) * c2 + _A7) * c2 + _A5) * c2 + _A3) * c2 + _A1)
    q = ((_B6 * c2 + _B4) * c2 + _B2) * c2 + _B0
    if abs(v) >= _CLAMP:
        # with fused multiply-adds the rational is 1 - 2.4e-7 at the clamp; saturated
        # gates must be exactly +-1, as torch's, or their gradients are not zero
        return _ONE if v > 0 else -_ONE
    return c * p / q


def _tanh(v):
    """tanh for the jitted kernels, specialised per float type by the overload below."""
    return math.tanh(v)


def _sigmoid(v):
    """Logistic function for the jitted kernels, specialised like _tanh."""
    return 1.0 / (1.0 + math.exp(-v))


# "contract": the polynomials as fused multiply-adds (the LSTM forward's step kernel
# 0.46 -> 0.29 ms over 32 steps of 32 x 4 x 128 gates).
@overload(_tanh, jit_options=dict(error_model="numpy", fastmath={"contract"}))
def _tanh_typed(v):
    if v == types.float32:
        return _tanh_float32
    return lambda v: math.tanh(v)


@overload(_sigmoid, jit_options=dict(error_model="numpy"))
def _sigmoid_typed(v):
    if v == types.float32:
        return lambda v: _HALF + _HALF * _tanh(_HALF * v)  # sigmoid(v) = (1 + tanh(v/2)) / 2
    return lambda v: 1.0 / (1.0 + math.exp(-v))


# Loop shape of the step kernels: per batch row, each loop runs from 0 over one gate's
# contiguous H-run and writes one array. Then LLVM needs few runtime alias checks (it
# gives up above 8) and no negative-index wraparound, and every loop vectorises; one
# fused loop writing five arrays ran 4-8x slower.


@njit(**_JIT)
def _lstm_step_forward(gx, rec, b, c_prev, act, c, tanh_c, h, out, t):
    """One step from the two projections (N, 4, H): writes act (i, f, g, o), c,
    tanh(c), h and out[:, t]."""
    n_batch, hid = c.shape
    for n in range(n_batch):
        for j in range(4):
            a, x, r, bj = act[n, j], gx[n, j], rec[n, j], b[j]
            if j == 2:
                for k in range(hid):
                    a[k] = _tanh(x[k] + r[k] + bj[k])
            else:
                for k in range(hid):
                    a[k] = _sigmoid(x[k] + r[k] + bj[k])
        ig, fg, gg, og = act[n, 0], act[n, 1], act[n, 2], act[n, 3]
        cp, cn, tc, hn, on = c_prev[n], c[n], tanh_c[n], h[n], out[n, t]
        for k in range(hid):
            cn[k] = fg[k] * cp[k] + ig[k] * gg[k]
        for k in range(hid):
            tc[k] = _tanh(cn[k])
        for k in range(hid):
            hn[k] = og[k] * tc[k]
        for k in range(hid):
            on[k] = hn[k]


@njit(**_JIT)
def _lstm_step_backward(act, c_prev, tanh_c, grad_out, t, dh, dc, dg):
    """Pre-activation gradients dg (N, 4, H) of one step.

    On entry dh and dc are dL/dh_t and dL/dc_t from later steps (grad_out[:, t] is
    added to dh here); on exit dc is dL/dc_{t-1}.
    """
    n_batch, hid = dh.shape
    for n in range(n_batch):
        ig, fg, gg, og = act[n, 0], act[n, 1], act[n, 2], act[n, 3]
        di, df, dgg, do = dg[n, 0], dg[n, 1], dg[n, 2], dg[n, 3]
        cp, tc, go, dhn, dcn = c_prev[n], tanh_c[n], grad_out[n, t], dh[n], dc[n]
        for k in range(hid):
            dhn[k] += go[k]
        for k in range(hid):
            do[k] = dhn[k] * tc[k] * (og[k] - og[k] * og[k])
        for k in range(hid):
            dcn[k] += dhn[k] * og[k] * (_ONE - tc[k] * tc[k])
        for k in range(hid):
            di[k] = dcn[k] * gg[k] * (ig[k] - ig[k] * ig[k])
        for k in range(hid):
            df[k] = dcn[k] * cp[k] * (fg[k] - fg[k] * fg[k])
        for k in range(hid):
            dgg[k] = dcn[k] * ig[k] * (_ONE - gg[k] * gg[k])
        for k in range(hid):
            dcn[k] *= fg[k]


@njit(**_JIT)
def _gru_step_forward(gx, rec, b_ih, b_hh, h_prev, act, hn, h, out, t):
    """One step from the two projections (N, 3, H): writes act (r, z, n),
    hn = W_hn h + b_hn (the backward of r needs it), h and out[:, t]."""
    n_batch, hid = h.shape
    for n in range(n_batch):
        for j in range(2):
            a, x, r, bi, bh = act[n, j], gx[n, j], rec[n, j], b_ih[j], b_hh[j]
            for k in range(hid):
                a[k] = _sigmoid(x[k] + bi[k] + r[k] + bh[k])
        rg, zg, ng = act[n, 0], act[n, 1], act[n, 2]
        xn, rn, bin_, bhn = gx[n, 2], rec[n, 2], b_ih[2], b_hh[2]
        hnn, hp, hv, on = hn[n], h_prev[n], h[n], out[n, t]
        for k in range(hid):
            hnn[k] = rn[k] + bhn[k]
        for k in range(hid):
            ng[k] = _tanh(xn[k] + bin_[k] + rg[k] * hnn[k])
        for k in range(hid):
            hv[k] = ng[k] + zg[k] * (hp[k] - ng[k])  # (1 - z) n + z h
        for k in range(hid):
            on[k] = hv[k]


@njit(**_JIT)
def _gru_step_backward(act, hn, h_prev, grad_out, t, dh_direct, dh_rec, dg_in, dg_rec):
    """Pre-activation gradients (N, 3, H) of one step on the input side (dg_in) and
    on the recurrent side (dg_rec: n's gradient scaled by r).

    dL/dh_t = dh_direct + dh_rec + grad_out[:, t]; on exit dh_direct is the part of
    dL/dh_{t-1} through z * h_{t-1} (the rest is dg_rec @ w_hh).
    """
    n_batch, hid = dh_direct.shape
    for n in range(n_batch):
        rg, zg, ng = act[n, 0], act[n, 1], act[n, 2]
        dr, dz, dn = dg_in[n, 0], dg_in[n, 1], dg_in[n, 2]
        rec_r, rec_z, rec_n = dg_rec[n, 0], dg_rec[n, 1], dg_rec[n, 2]
        hnn, hp, go, dhn, dhr = hn[n], h_prev[n], grad_out[n, t], dh_direct[n], dh_rec[n]
        for k in range(hid):
            dhn[k] += dhr[k] + go[k]
        for k in range(hid):
            dn[k] = dhn[k] * (_ONE - zg[k]) * (_ONE - ng[k] * ng[k])
        for k in range(hid):
            dz[k] = dhn[k] * (hp[k] - ng[k]) * (zg[k] - zg[k] * zg[k])
        for k in range(hid):
            dr[k] = dn[k] * hnn[k] * (rg[k] - rg[k] * rg[k])
        for k in range(hid):
            rec_r[k] = dr[k]
        for k in range(hid):
            rec_z[k] = dz[k]
        for k in range(hid):
            rec_n[k] = dn[k] * rg[k]
        for k in range(hid):
            dhn[k] *= zg[k]


def _check_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, gates):
    """Validate the forward arguments of a cell with `gates` gates; return (N, T, I, H)."""
    check_array("x", x, ndim=3)
    n, t, i = x.shape
    if t < 1:
        raise ValueError(f"x: expected a sequence length T >= 1, received shape {x.shape}")
    check_array("w_hh", w_hh, ndim=2)
    h = w_hh.shape[1]
    if h < 1 or w_hh.shape[0] != gates * h:
        raise ValueError(f"w_hh: expected shape ({gates}*H, H) with H >= 1, received {w_hh.shape}")
    check_array("w_ih", w_ih, ndim=2)
    check_shape("w_ih", w_ih, (gates * h, i))
    for name, b in (("b_ih", b_ih), ("b_hh", b_hh)):
        check_array(name, b, ndim=1)
        check_shape(name, b, (gates * h,))
    check_array("h0", h0, ndim=2)
    check_shape("h0", h0, (n, h))
    check_same_dtype(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    return n, t, i, h


def _check_cache(cache, size, kind):
    if not isinstance(cache, tuple) or len(cache) != size:
        raise ValueError(
            f"cache: expected the {size}-tuple returned by {kind}_forward, "
            f"received {type(cache).__name__}"
        )


def _check_grad_out(grad_out, h_all):
    check_array("grad_out", grad_out, ndim=3)
    t1, n, h = h_all.shape
    check_shape("grad_out", grad_out, (n, t1 - 1, h))
    check_same_dtype(cache=h_all, grad_out=grad_out)


def _state_grad(name, g, like):
    """A gradient w.r.t. an (N, H) state as a fresh array: zeros for None, else a checked
    copy (BPTT updates it in place; the caller's array stays untouched)."""
    if g is None:
        return np.zeros_like(like)
    check_array(name, g, ndim=2)
    check_shape(name, g, like.shape)
    check_same_dtype(**{"cache": like, name: g})
    return g.copy()


def _project(a, b, out):
    """out = a @ b: gemm's micro-kernels where b's columns are a multiple of 16 (and a is
    C-contiguous), else BLAS; one task, as the steps (a column split of the backward's dx
    over two threads gained nothing alone and lost 0.4-0.9 ms of 8 beside torch's threads)."""
    if gemm.applies(b) and a.flags.c_contiguous:
        gemm.matmul_columns(a, b, out, 0, b.shape[1], b[0], False, gemm.WIDE)  # b[0]: never read
    else:
        np.matmul(a, b, out=out)


def _forward_buffers(x, gates, h, out=None):
    """Time-major x and the recurrent buffers: h_all, act, rec (one step's (N, G, H)
    projection) and out (a fresh one unless given)."""
    n, t, _ = x.shape
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    h_all = np.empty((t + 1, n, h), dtype=x.dtype)
    act = np.empty((t, n, gates, h), dtype=x.dtype)
    rec = gemm.empty((n, gates, h), x.dtype)
    out = np.empty((n, t, h), dtype=x.dtype) if out is None else out
    return xt, h_all, act, rec, out


def _input_projection(xt, w_ih, h):
    """The input projection of all steps (T, N, G, H), one GEMM."""
    t, n, i = xt.shape
    gx = gemm.empty((t, n, w_ih.shape[0] // h, h), xt.dtype)
    _project(xt.reshape(t * n, i), gemm.transpose(w_ih), gx.reshape(t * n, w_ih.shape[0]))
    return gx


def _rows(a):
    """(..., G, H) gate buffer as a (rows, G*H) view for BLAS; also for an empty batch."""
    return a.reshape(-1, a.shape[-2] * a.shape[-1])


def _recurrent_projection(h_prev, w_hh_t, rec):
    """rec = h_prev @ w_hh.T, written into the (N, G, H) buffer."""
    _project(h_prev, w_hh_t, _rows(rec))


def _gemm_grads(dg_in, dg_rec, xt, h_all, w_ih):
    """dx, dw_ih, dw_hh from the pre-activation gradients of all steps, one GEMM each: dx on
    gemm's micro-kernels where I is a multiple of 16 (0.65 against 0.69 ms at T*N = 1024,
    4H = 512, I = 64), the weight gradients on BLAS (K = T*N is long and their outputs
    narrow: the micro-kernel ran them 1.8x slower)."""
    t, n, i = xt.shape
    rows, rows_rec = _rows(dg_in), _rows(dg_rec)
    dx = gemm.empty((t * n, i), xt.dtype)
    _project(rows, w_ih, dx)
    dx = np.ascontiguousarray(dx.reshape(t, n, i).transpose(1, 0, 2))
    dw_ih = rows.T @ xt.reshape(t * n, i)
    dw_hh = rows_rec.T @ h_all[:t].reshape(t * n, h_all.shape[2])
    return dx, dw_ih, dw_hh


@njit(**_JIT)
def _lstm_steps(xt, w_ih_t, w_hh_t, b, h_all, c_all, act, tanh_c, gx, rec, out, wide):
    """Every step of the forward: the step's input and recurrent projections into gx and
    rec (gemm's micro-kernels where 4H is a multiple of 16, else BLAS), then
    _lstm_step_forward. Projecting x step by step keeps gx in cache (all steps' at once
    went through L3: 2 MB at N = T = 32, H = 128; 2.25 -> 2.20 ms). One call from Python
    for all steps: each call from Python costs microseconds, a step ~50."""
    gx2d = gx.reshape(gx.shape[0], gx.shape[1] * gx.shape[2])
    rec2d = rec.reshape(rec.shape[0], rec.shape[1] * rec.shape[2])
    direct = rec2d.shape[1] % gemm.CHANNELS == 0
    for s in range(xt.shape[0]):
        if direct:
            gemm.matmul_columns(xt[s], w_ih_t, gx2d, 0, gx2d.shape[1], b[0], False, wide)
            gemm.matmul_columns(h_all[s], w_hh_t, rec2d, 0, rec2d.shape[1], b[0], False, wide)
        else:
            np.dot(xt[s], w_ih_t, gx2d)
            np.dot(h_all[s], w_hh_t, rec2d)
        _lstm_step_forward(gx, rec, b, c_all[s], act[s], c_all[s + 1], tanh_c[s], h_all[s + 1], out, s)


# LSTM batch blocks: whole micro-kernel row blocks (gemm's 16 float32 rows at 512 bits)
# each, at most _LSTM_MAX_BLOCKS. A sample's sequence depends on no other sample, so each
# block runs all its steps as one task, without a barrier per step.
_LSTM_BLOCK_ROWS = 16
_LSTM_MAX_BLOCKS = 4


def _batch_blocks(n):
    """[(r0, r1)]: the batch's rows in blocks of a multiple of _LSTM_BLOCK_ROWS rows (one
    block below 2 x _LSTM_BLOCK_ROWS). The cut depends on n only, never on the thread
    count, so the bits of every output and gradient do not either."""
    count = max(1, min(_LSTM_MAX_BLOCKS, n // _LSTM_BLOCK_ROWS))
    step = -(-n // count)
    step = -(-step // _LSTM_BLOCK_ROWS) * _LSTM_BLOCK_ROWS if count > 1 else max(n, 1)
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)] or [(0, 0)]


def _lstm_block_forward(x, h0, c0, w_ih_t, w_hh_t, b, out):
    """The forward of one batch block (x (n, T, I) and out its rows): its time-major
    buffers (xt, h_all, c_all, act, tanh_c), out written."""
    t, h = x.shape[1], h0.shape[1]
    xt, h_all, act, rec, _ = _forward_buffers(x, 4, h, out=out)
    gx = gemm.empty(rec.shape, x.dtype)
    c_all = np.empty_like(h_all)
    tanh_c = np.empty((t, x.shape[0], h), dtype=x.dtype)
    h_all[0] = h0
    c_all[0] = c0
    _lstm_steps(xt, w_ih_t, w_hh_t, b, h_all, c_all, act, tanh_c, gx, rec, out, gemm.WIDE)
    return xt, h_all, c_all, act, tanh_c


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """LSTM over a batch-first sequence, as torch.nn.LSTM(batch_first=True), one layer.

    Args:
        x: inputs, float32 (or float64), T >= 1.
        h0, c0: initial hidden and cell states; zeros when the model has none.
        w_ih, w_hh, b_ih, b_hh: PyTorch's weights, gate rows i, f, g, o.
    Shape:
        x (N, T, I), h0 and c0 (N, H), w_ih (4H, I), w_hh (4H, H), b_ih and b_hh (4H,)
        -> out (N, T, H) (h_t of every step), h_T (N, H), c_T (N, H).
    Returns:
        (out, h_T, c_T, cache); cache is what lstm_backward needs.

    Batch blocks (_batch_blocks) run as tasks over the kernel threads.
    """
    n, t, _, h = _check_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, gates=4)
    check_array("c0", c0, ndim=2)
    check_shape("c0", c0, (n, h))
    check_same_dtype(x=x, c0=c0)
    out = np.empty((n, t, h), dtype=x.dtype)
    b = (b_ih + b_hh).reshape(4, h)
    w_ih_t, w_hh_t = gemm.transpose(w_ih), gemm.transpose(w_hh)
    bounds = _batch_blocks(n)
    blocks = [None] * len(bounds)

    def block_task(k):
        r = slice(*bounds[k])
        blocks[k] = _lstm_block_forward(x[r], h0[r], c0[r], w_ih_t, w_hh_t, b, out[r])

    run_tasks(block_task, len(bounds))
    h_t = np.concatenate([block[1][t] for block in blocks])
    c_t = np.concatenate([block[2][t] for block in blocks])
    cache = (w_ih, w_hh, (n, t, h), bounds, blocks)
    return out, h_t, c_t, cache


@njit(**_JIT)
def _lstm_backward_steps(act, c_all, tanh_c, grad_out, w_hh, dh, dc, dg, wide):
    """Every step of BPTT, last first: _lstm_step_backward, then dh = dg[s] @ w_hh (gemm's
    micro-kernels where H is a multiple of 16, else BLAS), in one call from Python."""
    n_batch, hid = dh.shape
    for s in range(act.shape[0] - 1, -1, -1):
        _lstm_step_backward(act[s], c_all[s], tanh_c[s], grad_out, s, dh, dc, dg[s])
        rows = dg[s].reshape(n_batch, dg.shape[2] * hid)
        if hid % gemm.CHANNELS == 0:
            gemm.matmul_columns(rows, w_hh, dh, 0, hid, w_hh[0], False, wide)
        else:
            np.dot(rows, w_hh, dh)


def lstm_backward(cache, grad_out, grad_hT=None, grad_cT=None):
    """Backpropagation through time for lstm_forward.

    Args:
        cache: the cache returned by lstm_forward.
        grad_out: dL/dout; zeros except the last step when the model uses only the
            last output.
        grad_hT, grad_cT: dL/dh_T and dL/dc_T, or None for zero.
    Shape:
        grad_out (N, T, H), grad_hT and grad_cT (N, H).
    Returns:
        (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), shaped like the forward inputs.

    The forward's batch blocks run as tasks; the weight gradients are their partials
    added in block order.
    """
    _check_cache(cache, 5, "lstm")
    w_ih, w_hh, (n, t, h), bounds, blocks = cache
    check_array("grad_out", grad_out, ndim=3)
    check_shape("grad_out", grad_out, (n, t, h))
    check_same_dtype(cache=w_ih, grad_out=grad_out)
    like = np.empty((n, h), w_ih.dtype)
    dh = _state_grad("grad_hT", grad_hT, like)
    dc = _state_grad("grad_cT", grad_cT, like)
    dx = np.empty((n, t, w_ih.shape[1]), w_ih.dtype)
    partials = [None] * len(bounds)

    def block_task(k):
        r = slice(*bounds[k])
        xt, h_all, c_all, act, tanh_c = blocks[k]
        dg = np.empty_like(act)
        _lstm_backward_steps(act, c_all, tanh_c, grad_out[r], w_hh, dh[r], dc[r], dg, gemm.WIDE)
        dx[r], dw_ih, dw_hh = _gemm_grads(dg, dg, xt, h_all, w_ih)
        partials[k] = dw_ih, dw_hh, _rows(dg).sum(axis=0)

    run_tasks(block_task, len(bounds))
    dw_ih, dw_hh, db = (sum_in_order([p[j] for p in partials]) for j in range(3))
    return dx, dh, dc, dw_ih, dw_hh, db, db.copy()


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """GRU over a batch-first sequence, as torch.nn.GRU(batch_first=True), one layer.

    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    Args:
        x: inputs, float32 (or float64), T >= 1.
        h0: initial hidden state; zeros when the model has none.
        w_ih, w_hh, b_ih, b_hh: PyTorch's weights, gate rows r, z, n.
    Shape:
        x (N, T, I), h0 (N, H), w_ih (3H, I), w_hh (3H, H), b_ih and b_hh (3H,)
        -> out (N, T, H), h_T (N, H).
    Returns:
        (out, h_T, cache); cache is what gru_backward needs.
    """
    n, t, _, h = _check_sequence(x, h0, w_ih, w_hh, b_ih, b_hh, gates=3)
    xt, h_all, act, rec, out = _forward_buffers(x, 3, h)
    gx = _input_projection(xt, w_ih, h)
    hn = np.empty((t, n, h), dtype=x.dtype)
    b_ih3, b_hh3 = b_ih.reshape(3, h), b_hh.reshape(3, h)
    w_hh_t = gemm.transpose(w_hh)
    h_all[0] = h0
    for s in range(t):
        _recurrent_projection(h_all[s], w_hh_t, rec)
        _gru_step_forward(gx[s], rec, b_ih3, b_hh3, h_all[s], act[s], hn[s], h_all[s + 1],
                          out, s)
    cache = (xt, w_ih, w_hh, h_all, act, hn)
    return out, h_all[t].copy(), cache


def gru_backward(cache, grad_out, grad_hT=None):
    """Backpropagation through time for gru_forward.

    Args:
        cache: the cache returned by gru_forward.
        grad_out: dL/dout.
        grad_hT: dL/dh_T, or None for zero.
    Shape:
        grad_out (N, T, H), grad_hT (N, H).
    Returns:
        (dx, dh0, dw_ih, dw_hh, db_ih, db_hh), shaped like the forward inputs.
    """
    _check_cache(cache, 6, "gru")
    xt, w_ih, w_hh, h_all, act, hn = cache
    _check_grad_out(grad_out, h_all)
    dh_direct = _state_grad("grad_hT", grad_hT, h_all[0])
    dh_rec = np.zeros_like(dh_direct)
    dg_in = np.empty_like(act)
    dg_rec = np.empty_like(act)
    for s in range(xt.shape[0] - 1, -1, -1):
        _gru_step_backward(act[s], hn[s], h_all[s], grad_out, s, dh_direct, dh_rec,
                           dg_in[s], dg_rec[s])
        np.matmul(_rows(dg_rec[s]), w_hh, out=dh_rec)
    dx, dw_ih, dw_hh = _gemm_grads(dg_in, dg_rec, xt, h_all, w_ih)
    db_ih = _rows(dg_in).sum(axis=0)
    db_hh = _rows(dg_rec).sum(axis=0)
    return dx, dh_direct + dh_rec, dw_ih, dw_hh, db_ih, db_hh
