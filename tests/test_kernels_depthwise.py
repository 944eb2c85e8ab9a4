"""The depthwise convolution (kernels/depthwise.py) through conv2d_forward / conv2d_backward."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import depthwise, threads
from bigdl_py.kernels.conv import conv2d_backward, conv2d_forward
from bigdl_py.testing import numeric_grad, projection

# id -> (x shape NHWC, (KH, KW), multiplier, stride, padding, dilation)
CASES = {
    # the 3x3 interior runs longer than a vector block; 20 channels: whole vectors and single channels
    "3x3_pad1_wide_rows": ((2, 5, 40, 16), (3, 3), 1, 1, 1, 1),
    "3x3_pad1_20ch": ((2, 6, 7, 20), (3, 3), 1, 1, 1, 1),
    # 25 taps: micro-kernel calls of 9, 9, 3, 3 and 1 taps; border lines of 15 and 20 taps
    "5x5_pad2": ((2, 7, 9, 8), (5, 5), 1, 1, 2, 1),
    "3x3_stride2_dilation2": ((1, 9, 9, 4), (3, 3), 1, 2, 2, 2),
    "3x3_stride_2x1": ((2, 9, 10, 5), (3, 3), 1, (2, 1), 1, 1),
    # dx by the rotated-kernel conv with dilation, and with negative padding (taps all in the padding)
    "3x3_dilation2_stride1": ((2, 8, 9, 6), (3, 3), 1, 1, 2, 2),
    "2x3_padding_wider_than_kernel": ((1, 4, 5, 3), (2, 3), 1, 1, (3, 2), 1),
    "3x2_multiplier2": ((2, 6, 7, 5), (3, 2), 2, 1, (1, 0), 1),
    "1x1": ((2, 4, 5, 6), (1, 1), 1, 1, 0, 1),
}


def make(name, dtype=np.float32, seed=0):
    shape, (kh, kw), mult, stride, padding, dilation = CASES[name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((kh, kw, 1, shape[3] * mult)).astype(dtype)
    b = rng.standard_normal(shape[3] * mult).astype(dtype)
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=shape[3])


def torch_conv(x, w, b, grad_y, stride, padding, dilation, groups):
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    yt = F.conv2d(xt, wt, bt, stride, padding, dilation, groups)
    yt.backward(torch.tensor(grad_y.transpose(0, 3, 1, 2)))
    return (yt.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            wt.grad.numpy().transpose(2, 3, 1, 0), bt.grad.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", CASES)
def test_forward_and_gradients_match_torch(name, dtype):
    x, w, b, kw = make(name, dtype)
    y = conv2d_forward(x, w, b, **kw)
    grad_y = projection(y.shape, seed=1).astype(dtype)
    dx, dw, db = conv2d_backward(x, w, grad_y, **kw)
    assert y.dtype == dx.dtype == dw.dtype == dtype
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for got, want in zip((y, dx, dw, db), torch_conv(x, w, b, grad_y, **kw)):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name", ["3x3_pad1_20ch", "5x5_pad2", "3x3_stride2_dilation2", "3x3_dilation2_stride1",
                                  "2x3_padding_wider_than_kernel", "3x2_multiplier2"])
def test_gradients_match_float64_finite_differences(name):
    x, w, b, kw = make(name, np.float64)
    x = np.ascontiguousarray(x[:1, :6, :6])
    r = projection(conv2d_forward(x, w, b, **kw).shape, seed=2)

    def loss(xv, wv, bv):
        return (r * conv2d_forward(xv, wv, bv, **kw)).sum()

    dx, dw, db = conv2d_backward(x, w, r, **kw)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: loss(v, w, b), x), atol=1e-6)
    np.testing.assert_allclose(dw, numeric_grad(lambda v: loss(x, v, b), w), atol=1e-6)
    np.testing.assert_allclose(db, numeric_grad(lambda v: loss(x, w, v), b), atol=1e-6)


@pytest.mark.parametrize("name", ["3x3_pad1_wide_rows", "5x5_pad2", "3x2_multiplier2"])
def test_fused_relu6_is_the_clamp_of_the_biased_output(name):
    x, w, b, kw = make(name)
    y = conv2d_forward(x, w * 4, b, **kw)
    y6 = conv2d_forward(x, w * 4, b, **kw, relu=True, relu_cap=6)
    np.testing.assert_array_equal(y6, np.clip(y, 0, 6))
    assert (y6 == 6).any() and (y6 == 0).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_stores_give_the_same_bits(dtype, monkeypatch):
    """Outputs of _STREAM_BYTES and more (none in the other tests) are stored around the caches."""
    x, w, b, kw = make("3x3_pad1_wide_rows", dtype)
    x = np.repeat(x, 2, axis=3)  # 32 channels: whole vectors at either width and dtype
    w, b, kw["groups"] = np.repeat(w, 2, axis=3), np.repeat(b, 2), 32
    grad_y = projection(conv2d_forward(x, w, b, **kw).shape, seed=1).astype(dtype)
    cached = (conv2d_forward(x, w, b, **kw), *conv2d_backward(x, w, grad_y, **kw))
    monkeypatch.setattr(depthwise, "_STREAM_BYTES", 0)
    assert depthwise._streams(cached[0]) and depthwise._streams(cached[1])
    streamed = (conv2d_forward(x, w, b, **kw), *conv2d_backward(x, w, grad_y, **kw))
    for a, s in zip(cached, streamed):
        np.testing.assert_array_equal(a, s)


def test_outputs_start_on_a_vector_boundary():
    x, w, b, kw = make("3x3_pad1_wide_rows")
    y = conv2d_forward(x, w, b, **kw)
    dx, _, _ = conv2d_backward(x, w, y, **kw)
    assert y.ctypes.data % depthwise._VECTOR_BYTES == 0 and dx.ctypes.data % depthwise._VECTOR_BYTES == 0
    assert y.flags.c_contiguous and dx.flags.c_contiguous


@pytest.mark.parametrize("stride", [1, 2])
def test_the_same_bits_on_one_and_two_threads(stride):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((9, 64, 64, 32), dtype=np.float32)  # 9.4 MB: several image blocks, uneven
    w = rng.standard_normal((3, 3, 1, 32), dtype=np.float32)
    b = rng.standard_normal(32, dtype=np.float32)
    results = []
    for n in (1, 2):
        threads.set_num_threads(n)
        try:
            y = conv2d_forward(x, w, b, stride, 1, 1, 32, relu=True)
            results.append((y, conv2d_forward(x, w, b, stride, 1, 1, 32),
                            *conv2d_backward(x, w, y, stride, 1, 1, 32)))
        finally:
            threads.set_num_threads(1)
    assert len(depthwise.blocks(9, 64 * 64 * 32)) > 1
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("name", ["3x3_pad1_20ch", "3x3_stride2_dilation2", "3x2_multiplier2"])
def test_need_flags_give_the_same_gradients(name):
    x, w, b, kw = make(name)
    grad_y = projection(conv2d_forward(x, w, b, **kw).shape, seed=1).astype(np.float32)
    dx, dw, db = conv2d_backward(x, w, grad_y, **kw)
    dx_only, none_w, none_b = conv2d_backward(x, w, grad_y, **kw, need_dw=False)
    none_x, dw_only, db_only = conv2d_backward(x, w, grad_y, **kw, need_dx=False)
    assert none_w is None and none_b is None and none_x is None
    np.testing.assert_array_equal(dx_only, dx)
    np.testing.assert_array_equal(dw_only, dw)
    np.testing.assert_array_equal(db_only, db)
