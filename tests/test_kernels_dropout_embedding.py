import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py.kernels import dropout, embedding
from bigdl_py.testing import numeric_grad, projection


def test_dropout_same_seed_same_mask_other_seed_other_mask():
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32)
    y1, m1 = dropout.dropout_forward(x, 0.5, seed=7)
    y2, m2 = dropout.dropout_forward(x, 0.5, seed=7)
    _, m3 = dropout.dropout_forward(x, 0.5, seed=8)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(m1, m3)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_mask_values_rate_and_scale_match_torch(p):
    x = np.random.default_rng(0).standard_normal((100, 100)).astype(np.float32)
    y, mask = dropout.dropout_forward(x, p, seed=3)
    assert mask.dtype == np.float32 and mask.shape == x.shape
    torch.manual_seed(0)
    kept_t = F.dropout(torch.ones(100, 100), p, training=True).unique()
    np.testing.assert_allclose(np.unique(mask), kept_t.numpy(), rtol=1e-6)
    assert abs((mask == 0).mean() - p) < 0.03
    np.testing.assert_array_equal(y, x * mask)


def test_dropout_p_zero_is_identity():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    y, mask = dropout.dropout_forward(x, 0.0, seed=1)
    np.testing.assert_array_equal(y, x)
    assert y is not x
    np.testing.assert_array_equal(dropout.dropout_backward(np.ones_like(x), mask), np.ones_like(x))


def test_dropout_backward_matches_finite_differences():
    x = np.random.default_rng(0).standard_normal((3, 4))
    r = projection(x.shape)
    _, mask = dropout.dropout_forward(x, 0.4, seed=5)
    loss = lambda v: np.sum(r * dropout.dropout_forward(v, 0.4, seed=5)[0])
    np.testing.assert_allclose(dropout.dropout_backward(r, mask), numeric_grad(loss, x),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1,), (5,), (2, 3), (2, 1, 4)])
@pytest.mark.parametrize("padding_idx", [None, 2, -1])
def test_embedding_matches_torch_with_repeats_and_padding(index_dtype, shape, padding_idx):
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 3)).astype(np.float32)
    indices = rng.integers(0, 6, shape).astype(index_dtype)
    indices.reshape(-1)[0] = 5  # padding_idx=-1 is row 5
    indices.reshape(-1)[-1] = 2
    grad_y = projection(shape + (3,), seed=1).astype(np.float32)
    wt = torch.tensor(weight, requires_grad=True)
    yt = F.embedding(torch.tensor(indices.astype(np.int64)), wt, padding_idx=padding_idx)
    yt.backward(torch.tensor(grad_y))
    y = embedding.embedding_forward(indices, weight, padding_idx)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dw = embedding.embedding_backward(indices, grad_y, 6, padding_idx)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_embedding_backward_accumulates_repeats_and_zeroes_padding():
    indices = np.array([[1, 1, 0], [1, 3, 0]], dtype=np.int64)
    g = np.ones((2, 3, 2), np.float32)
    dw = embedding.embedding_backward(indices, g, 4, padding_idx=0)
    np.testing.assert_array_equal(dw, [[0, 0], [3, 3], [0, 0], [1, 1]])


def test_embedding_backward_matches_finite_differences():
    weight = np.random.default_rng(0).standard_normal((5, 2))
    indices = np.array([[0, 4, 4], [2, 0, 1]], dtype=np.int32)
    r = projection(indices.shape + (2,))
    loss = lambda v: np.sum(r * embedding.embedding_forward(indices, v))
    np.testing.assert_allclose(embedding.embedding_backward(indices, r, 5), numeric_grad(loss, weight),
                               rtol=1e-6, atol=1e-8)


WEIGHT = np.zeros((4, 2), np.float32)
IDX = np.array([[0, 1], [2, 3]], dtype=np.int64)
X = np.zeros((2, 3), np.float32)


@pytest.mark.parametrize("call,name", [
    (lambda: dropout.dropout_forward(X, 1.0, seed=0), "p"),
    (lambda: dropout.dropout_forward(X, -0.1, seed=0), "p"),
    (lambda: dropout.dropout_forward(X, 0.5, seed=None), "seed"),
    (lambda: dropout.dropout_forward(X.astype(np.int32), 0.5, seed=0), "x"),
    (lambda: dropout.dropout_backward(X, np.ones((3, 2), np.float32)), "mask"),
    (lambda: embedding.embedding_forward(IDX.astype(np.float32), WEIGHT), "indices"),
    (lambda: embedding.embedding_forward(IDX, WEIGHT, padding_idx=4), "padding_idx"),
    (lambda: embedding.embedding_forward(IDX, WEIGHT[0]), "weight"),
    (lambda: embedding.embedding_backward(IDX, X, 4), "grad_y"),
    (lambda: embedding.embedding_backward(IDX, np.zeros((2, 2, 2), np.float32), 0), "num_embeddings"),
])
def test_bad_arguments_name_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


@pytest.mark.parametrize("bad,pos", [(4, (1, 0)), (-1, (0, 1))])
def test_out_of_range_index_error_names_the_value_and_position(bad, pos):
    indices = IDX.copy()
    indices[pos] = bad
    message = rf"^indices: expected values in \[0, 4\), received {bad} at position \({pos[0]}, {pos[1]}\)"
    with pytest.raises(ValueError, match=message):
        embedding.embedding_forward(indices, WEIGHT)
    with pytest.raises(ValueError, match=message):
        embedding.embedding_backward(indices, np.zeros((2, 2, 2), np.float32), 4)
