import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import conv, depthwise
from bigdl_py.kernels.conv import conv2d_backward, conv2d_forward, conv2d_output_shape
from bigdl_py.testing import numeric_grad, projection

# id -> (x shape NHWC, (KH, KW), Cout, stride, padding, dilation, groups)
CASES = {
    "3x3_pad1": ((2, 7, 9, 4), (3, 3), 6, 1, 1, 1, 1),
    "batch1_odd_kernel_3x2": ((1, 5, 11, 3), (3, 2), 5, 1, 0, 1, 1),
    "stride2": ((2, 9, 8, 4), (3, 3), 4, 2, 1, 1, 1),
    "stride_2x1_pad_0x2": ((1, 8, 7, 3), (3, 3), 5, (2, 1), (0, 2), 1, 1),
    "dilation2": ((2, 9, 10, 3), (3, 3), 4, 1, 2, 2, 1),
    "padding_wider_than_kernel": ((1, 4, 5, 2), (2, 2), 3, 1, 3, 1, 1),
    "groups2": ((2, 6, 7, 4), (3, 3), 6, 1, 1, 1, 2),
    "groups2_stride2": ((1, 7, 7, 6), (3, 3), 4, 2, 1, 1, 2),
    "depthwise": ((2, 7, 8, 6), (3, 3), 6, 1, 1, 1, 6),
    "depthwise_stride2_dilation2": ((1, 9, 9, 4), (3, 3), 4, 2, 2, 2, 4),
    "depthwise_multiplier2": ((2, 6, 5, 3), (3, 3), 6, 1, 1, 1, 3),
    "pointwise": ((2, 5, 6, 8), (1, 1), 4, 1, 0, 1, 1),
    "pointwise_groups2": ((2, 4, 5, 6), (1, 1), 4, 1, 0, 1, 2),
    "pointwise_stride2_pad1": ((1, 5, 6, 3), (1, 1), 4, 2, 1, 1, 1),
    "lenet_1ch_5x5": ((3, 12, 12, 1), (5, 5), 6, 1, 0, 1, 1),
    # "same" stride-1 convs of >= 16 channels: dx by the flipped-weight conv of grad_y
    "same_16ch_flipped_dx": ((2, 6, 7, 16), (3, 3), 5, 1, 1, 1, 1),
    "same_dilated_5x3_flipped_dx": ((1, 9, 8, 16), (5, 3), 4, 1, (4, 2), 2, 1),
    "one_channel_3x2_pad_1x2": ((2, 6, 9, 1), (3, 2), 5, 1, (1, 2), 1, 1),
    "one_channel_padding_wider_than_kernel": ((1, 3, 4, 1), (2, 3), 3, 1, 3, 1, 1),
    # stride 1 with Cout a multiple of 16: the direct forward (conv_direct.py); padded
    # rows of 9 and 8 positions, so pixel blocks of 6 straddle rows and images
    "direct_3x3_16_out": ((2, 5, 7, 4), (3, 3), 16, 1, 1, 1, 1),
    "direct_5x3_pad_2x0_two_channel_blocks": ((2, 6, 8, 3), (5, 3), 32, 1, (2, 0), 1, 1),
    # ... and dx by the flipped conv, direct too (16 input channels)
    "direct_same_16_in_16_out": ((2, 6, 7, 16), (3, 3), 16, 1, 1, 1, 1),
    # 512-bit blocks inside output rows (conv_direct._row_blocks): rows of 16 (whole
    # float32 blocks, float64 blocks of 8), of 8 with 36 KB of float32 weights (float32's
    # halved blocks, direct only at 512 bits), of 4 (float64's halved blocks)
    "direct_rows_of_16": ((2, 4, 16, 4), (3, 3), 16, 1, 1, 1, 1),
    "direct_rows_of_8_64_in": ((2, 5, 8, 64), (3, 3), 16, 1, 1, 1, 1),
    "direct_rows_of_4": ((1, 3, 4, 8), (3, 3), 32, 1, 1, 1, 1),
    # strided row blocks (ResNet's stage-opening convs): rows of 8
    "direct_rows_stride_2": ((2, 9, 16, 8), (3, 3), 16, 2, 1, 1, 1),
    "direct_rows_5x3_stride_2x3": ((2, 9, 24, 8), (5, 3), 16, (2, 3), (2, 1), 1, 1),
}


def test_dx_by_the_flipped_conv_only_where_it_pays():
    geometry = lambda x_shape, w_shape, padding: conv._Geometry(  # noqa: E731
        np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32), 1, padding, 1, 1)
    assert geometry((1, 8, 8, 16), (3, 3, 16, 16), 1).dx_padding == (1, 1)
    assert geometry((1, 12, 12, 6), (5, 5, 6, 16), 0).dx_padding is None  # LeNet-5's conv2: 2.7x slower
    assert geometry((1, 8, 8, 16), (3, 3, 16, 16), 0).dx_padding is None  # not "same"
    assert geometry((1, 8, 8, 8), (3, 3, 8, 16), 1).dx_padding is None  # N = Cin too small


@pytest.mark.parametrize("wide", [False, True], ids=["256_bit", "512_bit"])
def test_direct_conv_only_where_it_pays(wide, monkeypatch):
    monkeypatch.setattr(conv.conv_direct, "WIDE", wide)

    def direct(x_shape, w_shape, stride=1, padding=1, dilation=1, groups=1, dtype=np.float32):
        geo = conv._Geometry(np.zeros(x_shape, dtype), np.zeros(w_shape, dtype), stride, padding, dilation, groups)
        return conv.conv_direct.applies(geo, np.dtype(dtype))
    assert direct((1, 8, 8, 16), (3, 3, 16, 16)) and direct((1, 8, 8, 32), (3, 3, 32, 32))
    assert direct((1, 8, 8, 16), (3, 3, 16, 16), dtype=np.float64)  # 18 KB of weights per channel block
    assert direct((1, 8, 8, 3), (3, 3, 3, 16))  # ResNet's stem
    # 36 KB of weights per channel block, over L1: direct only in 512-bit blocks inside
    # output rows (rows of 8 or 16 float32 pixels, of 4 or 8 float64 ones)
    assert direct((1, 8, 8, 64), (3, 3, 64, 64)) == wide
    assert direct((1, 8, 4, 64), (3, 3, 64, 64), dtype=np.float64) == wide  # 72 KB
    assert not direct((1, 12, 12, 64), (3, 3, 64, 64))  # rows of 12 fit no block
    assert not direct((1, 8, 8, 256), (3, 3, 256, 64))  # 144 KB
    assert not direct((1, 8, 8, 16), (3, 3, 16, 24))  # Cout not a multiple of 16
    assert not direct((1, 8, 8, 16), (3, 3, 16, 16), stride=2)  # rows of 4 fit no block
    assert direct((1, 16, 16, 16), (3, 3, 16, 32), stride=2) == wide  # rows of 8: row blocks, any stride
    assert not direct((1, 16, 16, 16), (1, 1, 16, 32), stride=2, padding=0)  # but not a strided 1x1
    assert not direct((1, 8, 8, 16), (3, 3, 16, 16), dilation=2)
    assert not direct((1, 8, 8, 16), (3, 3, 8, 16), groups=2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, direct_dx", [("direct_3x3_16_out", False),
                                             ("direct_5x3_pad_2x0_two_channel_blocks", False),
                                             ("direct_same_16_in_16_out", True)])
def test_direct_cases_run_the_direct_kernels(name, direct_dx, dtype, monkeypatch):
    x, w, b, kw = make(CASES[name], dtype)
    calls = []
    for step in ("_direct_conv", "_direct_weight_grad", "_gemm_conv"):
        original = getattr(conv, step)
        monkeypatch.setattr(conv, step, lambda *a, _f=original, _n=step: calls.append(_n) or _f(*a))
    y = conv2d_forward(x, w, b, **kw)
    assert calls == ["_direct_conv"]
    calls.clear()
    conv2d_backward(x, w, projection(y.shape, seed=1).astype(dtype), **kw)
    assert calls == ["_direct_weight_grad"] + (["_direct_conv"] if direct_dx else [])


def make(case, dtype=np.float32, seed=0):
    shape, (kh, kw), cout, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((kh, kw, shape[3] // groups, cout)).astype(dtype)
    b = rng.standard_normal(cout).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def torch_conv(x, w, b, grad_y, stride, padding, dilation, groups):
    """Forward output and (dx, dw, db) from torch, converted to NHWC / HWIO."""
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    bt = None if b is None else torch.tensor(b, requires_grad=True)
    yt = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(torch.tensor(grad_y.transpose(0, 3, 1, 2)))
    db = None if b is None else bt.grad.numpy()
    return (
        yt.detach().numpy().transpose(0, 2, 3, 1),
        (xt.grad.numpy().transpose(0, 2, 3, 1), wt.grad.numpy().transpose(2, 3, 1, 0), db),
    )


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wide", [False, True], ids=["256_bit", "512_bit"])
@pytest.mark.parametrize("name", ["direct_3x3_16_out", "direct_5x3_pad_2x0_two_channel_blocks",
                                  "direct_same_16_in_16_out", "direct_rows_of_16", "direct_rows_of_8_64_in",
                                  "direct_rows_of_4", "direct_rows_stride_2", "direct_rows_5x3_stride_2x3"])
def test_direct_kernels_match_torch_at_either_vector_width(name, wide, dtype, monkeypatch):
    # the host picks one width (conv_direct.WIDE); LLVM lowers both anywhere, so both are checked
    x, w, b, kw = make(CASES[name], dtype)
    grad_y = projection(conv2d_forward(x, w, b, **kw).shape, seed=1).astype(dtype)
    monkeypatch.setattr(conv.conv_direct, "WIDE", not wide)
    _, dw_other_width, _ = conv2d_backward(x, w, grad_y, **kw, need_dx=False)
    monkeypatch.setattr(conv.conv_direct, "WIDE", wide)
    y = conv2d_forward(x, w, b, **kw)
    y_ref, (dx_ref, dw_ref, _) = torch_conv(x, w, b, grad_y, **kw)
    dx, dw, _ = conv2d_backward(x, w, grad_y, **kw)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, dw_ref, rtol=tol, atol=tol)
    geo = conv._Geometry(x, w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
    direct_here = conv.conv_direct.applies(geo, dtype)
    monkeypatch.setattr(conv.conv_direct, "WIDE", not wide)
    if direct_here and conv.conv_direct.applies(geo, dtype):
        np.testing.assert_array_equal(dw, dw_other_width)  # each dW value summed in the same order


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("name", CASES)
def test_forward_and_gradients_match_torch(name, with_bias):
    x, w, b, kw = make(CASES[name])
    b = b if with_bias else None
    y = conv2d_forward(x, w, b, **kw)
    assert y.dtype == np.float32
    grad_y = projection(y.shape, seed=1).astype(np.float32)
    y_ref, (dx_ref, dw_ref, db_ref) = torch_conv(x, w, b, grad_y, **kw)
    close(y, y_ref)
    dx, dw, db = conv2d_backward(x, w, grad_y, **kw, has_bias=with_bias)
    close(dx, dx_ref)
    close(dw, dw_ref)
    if with_bias:
        close(db, db_ref)
    else:
        assert db is None


@pytest.mark.parametrize("name", ["3x3_pad1", "groups2", "depthwise_multiplier2", "pointwise", "lenet_1ch_5x5"])
def test_fused_relu_is_relu_of_biased_output(name):
    x, w, b, kw = make(CASES[name])
    y = conv2d_forward(x, w, b, **kw)
    y_relu = conv2d_forward(x, w, b, **kw, relu=True)
    np.testing.assert_array_equal(y_relu, np.maximum(y, 0))
    assert (y < 0).any()  # the case exercises the clamp
    y6 = conv2d_forward(x, w * 8, b, **kw, relu=True, relu_cap=6)
    np.testing.assert_array_equal(y6, np.clip(conv2d_forward(x, w * 8, b, **kw), 0, 6))
    assert (y6 == 6).any() and (y6 == 0).any()


@pytest.mark.parametrize("cap, relu", [(0, True), (-1.0, True), ("6", True), (6, False)])
def test_relu_cap_needs_relu_and_a_positive_number(cap, relu):
    x, w, b, kw = make(CASES["pointwise"])
    with pytest.raises(ValueError, match="relu_cap: expected a positive number together with relu=True"):
        conv2d_forward(x, w, b, **kw, relu=relu, relu_cap=cap)


@pytest.mark.parametrize("name", ["3x3_pad1", "depthwise", "pointwise", "lenet_1ch_5x5", "one_channel_3x2_pad_1x2",
                                  "one_channel_padding_wider_than_kernel"])
def test_need_dx_false_skips_dx_and_keeps_dw(name):
    x, w, b, kw = make(CASES[name])
    grad_y = projection(conv2d_forward(x, w, b, **kw).shape, seed=1).astype(np.float32)
    _, dw_full, _ = conv2d_backward(x, w, grad_y, **kw)
    dx, dw, db = conv2d_backward(x, w, grad_y, **kw, need_dx=False)
    assert dx is None
    np.testing.assert_array_equal(dw, dw_full)
    np.testing.assert_allclose(db, grad_y.sum(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["3x3_pad1", "stride2", "groups2", "depthwise", "depthwise_stride2_dilation2",
                                  "depthwise_multiplier2", "pointwise", "pointwise_groups2", "lenet_1ch_5x5",
                                  "one_channel_3x2_pad_1x2", "same_16ch_flipped_dx", "direct_3x3_16_out",
                                  "direct_same_16_in_16_out"])
def test_need_dw_false_gives_the_same_dx_and_runs_no_weight_gradient_work(name, monkeypatch):
    x, w, b, kw = make(CASES[name])
    grad_y = projection(conv2d_forward(x, w, b, **kw).shape, seed=1).astype(np.float32)
    dx_full, _, _ = conv2d_backward(x, w, grad_y, **kw)
    calls = []  # every step that only the weight gradient needs, wrapped to count its calls
    steps = [(conv, step) for step in ("_grouped_matmul_tn", "im2col", "_one_channel_weight_grad_blocks",
                                       "_column_sums", "_direct_weight_grad")]
    for module, step in steps + [(depthwise, "_weight_grad_images")]:
        original = getattr(module, step)
        monkeypatch.setattr(module, step, lambda *a, _f=original, _n=step: calls.append(_n) or _f(*a))
    dx, dw, db = conv2d_backward(x, w, grad_y, **kw, need_dw=False)
    assert dw is None and db is None
    np.testing.assert_array_equal(dx, dx_full)
    assert calls == []  # dx by col2im, the flipped conv of grad_y or the depthwise gather: no dW step
    assert conv2d_backward(x, w, grad_y, **kw, need_dx=False, need_dw=False) == (None, None, None)


@pytest.mark.parametrize(
    "name", ["3x3_pad1", "stride_2x1_pad_0x2", "groups2_stride2", "depthwise_multiplier2",
             "pointwise_groups2", "dilation2", "lenet_1ch_5x5", "direct_3x3_16_out",
             "direct_5x3_pad_2x0_two_channel_blocks", "direct_same_16_in_16_out"]
)
def test_gradients_match_float64_finite_differences(name):
    shape, khw, cout, stride, padding, dilation, groups = CASES[name]
    tiny_shape = (1, min(shape[1], 6), min(shape[2], 6), shape[3])
    x, w, b, kw = make((tiny_shape, khw, cout, stride, padding, dilation, groups), dtype=np.float64)
    r = projection(conv2d_forward(x, w, b, **kw).shape, seed=2)

    def loss(xv, wv, bv):
        return (r * conv2d_forward(xv, wv, bv, **kw)).sum()

    dx, dw, db = conv2d_backward(x, w, r, **kw)
    assert dx.dtype == dw.dtype == db.dtype == np.float64
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(v, w, b), x), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: loss(x, v, b), w), atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(x, w, v), b), atol=1e-6)


@pytest.mark.parametrize("name", ["stride2", "dilation2", "groups2", "lenet_1ch_5x5", "pointwise", "pointwise_groups2"])
def test_results_do_not_depend_on_chunking(name, monkeypatch):
    x, w, b, kw = make(CASES[name], dtype=np.float64)
    y = conv2d_forward(x, w, b, **kw, relu=True)
    grads = conv2d_backward(x, w, projection(y.shape, seed=1), **kw)
    monkeypatch.setattr(conv, "_CHUNK_BYTES", 1)  # one output line per chunk
    np.testing.assert_allclose(conv2d_forward(x, w, b, **kw, relu=True), y, rtol=1e-12, atol=1e-12)
    for got, want in zip(conv2d_backward(x, w, projection(y.shape, seed=1), **kw), grads):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["3x3_pad1", "pointwise", "depthwise"])
def test_returned_arrays_are_fresh_not_scratch(name):
    x, w, b, kw = make(CASES[name])
    y1 = conv2d_forward(x, w, b, **kw)
    keep = y1.copy()
    grad_y = projection(y1.shape, seed=1).astype(np.float32)
    dx1, dw1, db1 = conv2d_backward(x, w, grad_y, **kw)
    kept = [dx1.copy(), dw1.copy(), db1.copy()]
    y2 = conv2d_forward(2 * x, w, b, **kw)
    dx2, dw2, db2 = conv2d_backward(2 * x, w, 3 * grad_y, **kw)
    np.testing.assert_array_equal(y1, keep)
    for a, k in zip((dx1, dw1, db1), kept):
        np.testing.assert_array_equal(a, k)
    for a, c in zip((y1, dx1, dw1, db1), (y2, dx2, dw2, db2)):
        assert not np.shares_memory(a, c)


def test_empty_batch_gives_empty_output_and_zero_gradients():
    x, w, b, kw = make(CASES["3x3_pad1"])
    x = x[:0].copy()
    y = conv2d_forward(x, w, b, **kw)
    assert y.shape == (0, 7, 9, 6)
    dx, dw, db = conv2d_backward(x, w, y, **kw)
    assert dx.shape == x.shape
    assert not dw.any() and not db.any()


@pytest.mark.parametrize("name", CASES)
def test_output_shape_matches_forward(name):
    x, w, b, kw = make(CASES[name])
    groups = kw.pop("groups")
    y = conv2d_forward(x, w, b, groups=groups, **kw)
    assert conv2d_output_shape(x.shape, w.shape, **kw) == y.shape


def bad_calls():
    x, w, b, _ = make(CASES["3x3_pad1"])
    gy = np.zeros((2, 7, 9, 6), np.float32)
    fwd, bwd = conv2d_forward, conv2d_backward
    return [
        ("x_int", lambda: fwd(x.astype(np.int32), w, b, padding=1), "x", "dtype"),
        ("x_float16", lambda: fwd(x.astype(np.float16), w, b, padding=1), "x", "dtype"),
        ("w_other_float", lambda: fwd(x, w.astype(np.float64), b, padding=1), "w", "dtype"),
        ("b_other_float", lambda: fwd(x, w, b.astype(np.float64), padding=1), "b", "dtype"),
        ("x_3d", lambda: fwd(x[0], w, b, padding=1), "x", "dimensions"),
        ("w_2d", lambda: fwd(x, w.reshape(-1, 6), b, padding=1), "w", "dimensions"),
        ("x_list", lambda: fwd(x.tolist(), w, b, padding=1), "x", "numpy array"),
        ("channel_mismatch", lambda: fwd(x[..., :3].copy(), w, b, padding=1), "w", "shape"),
        ("x_not_contiguous", lambda: fwd(x[:, ::2], w, b, padding=1), "x", "C-contiguous"),
        ("x_nchw_view", lambda: fwd(x.transpose(0, 3, 1, 2), w, b), "x", "C-contiguous"),
        ("negative_padding", lambda: fwd(x, w, b, padding=-1), "padding", ">= 0"),
        ("zero_stride", lambda: fwd(x, w, b, stride=(1, 0)), "stride", ">= 1"),
        ("zero_dilation", lambda: fwd(x, w, b, dilation=0), "dilation", ">= 1"),
        ("stride_triple", lambda: fwd(x, w, b, stride=(1, 1, 1)), "stride", "pair"),
        ("groups_not_dividing_cin", lambda: fwd(x, w, b, groups=3), "x", "divisible by groups=3"),
        ("groups_not_dividing_cout", lambda: fwd(x, w[..., :2, :5].copy(), b[:5], groups=2), "w",
         "divisible"),
        ("groups_zero", lambda: fwd(x, w, b, groups=0), "groups", ">= 1"),
        ("bias_length", lambda: fwd(x, w, b[:5].copy(), padding=1), "b", "shape (6)"),
        ("kernel_larger_than_input", lambda: fwd(x[:, :2].copy(), w, b), "x",
         "smaller than the dilated kernel"),
        ("relu_not_bool", lambda: fwd(x, w, b, relu="yes"), "relu", "bool"),
        ("grad_y_shape", lambda: bwd(x, w, gy[:, :6].copy(), padding=1), "grad_y",
         "shape (2, 7, 9, 6)"),
        ("grad_y_dtype", lambda: bwd(x, w, gy.astype(np.float64), padding=1), "grad_y", "dtype"),
        ("grad_y_not_contiguous", lambda: bwd(x, w, np.zeros((2, 7, 9, 12), np.float32)[..., ::2],
                                              padding=1), "grad_y", "C-contiguous"),
        ("backward_negative_padding", lambda: bwd(x, w, gy, padding=(1, -1)), "padding",
         ">= 0"),
        ("shape_of_3d", lambda: conv2d_output_shape((7, 9, 4), w.shape), "x_shape", "4 dimensions"),
        ("shape_too_small", lambda: conv2d_output_shape((1, 2, 2, 4), w.shape), "x_shape", "smaller"),
    ]


BAD_CALLS = bad_calls()


@pytest.mark.parametrize("call,name,fragment", [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_raise_value_error_naming_the_argument(call, name, fragment):
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert message.startswith(f"{name}:"), message
    assert fragment in message, message
