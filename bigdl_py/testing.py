"""check_layer: the checks every layer passes, built in or user-defined (no test runner needed).

A layer that passes `check_layer` computes the shapes it promises, has a backward that
matches float64 finite differences for the input and every parameter, saves and loads
through `save_model`/`load_model`, predicts with `infer` exactly as with `forward`,
gives a sample the same output alone as in a batch, keeps float32 in float32, and works
on one flat parameter vector as the engines pack it. A failed check raises
AssertionError naming the layer, the check and the worst element.

Example:
    from bigdl_py.testing import check_layer
    check_layer(Scale(4), (3, 4), expected_output_shape=(3, 4))
"""
import json
import tempfile

import numpy as np

from bigdl_py.nn.io import load_model, save_model
from bigdl_py.nn.module import Module, from_config


# ---- finite differences --------------------------------------------------------------

def numeric_grad(f, x, eps=1e-3):
    """d f(x) / dx by central differences; f maps a float64 array to a scalar."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        hi = f(x)
        flat[i] = keep - eps
        lo = f(x)
        flat[i] = keep
        gflat[i] = (hi - lo) / (2 * eps)
    return grad


def projection(shape, seed=0):
    """A fixed random weight r so that sum(r * y) turns an output y into a scalar loss."""
    return np.random.default_rng(seed).standard_normal(shape)


# ---- input makers: (shape, rng) -> array ------------------------------------------------

def normal_input(shape, rng):
    """Standard normal float32 values."""
    return rng.standard_normal(shape).astype(np.float32)


def off_zero_input(shape, rng):
    """Normal values at least 0.2 away from 0, so finite differences never cross a kink at 0 (ReLU)."""
    x = rng.standard_normal(shape)
    return (np.sign(x) * (0.2 + np.abs(x))).astype(np.float32)


def distinct_input(shape, rng):
    """All-different values 0.1 apart (max pooling: no ties, gaps far wider than the finite-difference step)."""
    return (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1 - 1.0).astype(np.float32)


def index_input(high):
    """A maker of int64 indices in [0, high) (embedding lookups)."""
    if not isinstance(high, (int, np.integer)) or high < 1:
        raise ValueError(f"index_input: expected high to be an int >= 1, received {high!r}")

    def make(shape, rng):
        return rng.integers(0, high, shape).astype(np.int64)
    return make


# ---- the harness -----------------------------------------------------------------------

def check_layer(layer, input_shape=None, *, inputs=None, input_maker=normal_input, expected_output_shape=None,
                rtol=1e-4, atol=1e-6, eps=1e-3, seed=0):
    """Run every layer check on `layer`; AssertionError naming the layer, check and worst element on failure.

    Args:
        layer: a registered Module (a layer or a container), in the mode to check (train or eval).
        input_shape: the batch's shape, e.g. (2, 5) (batch axis first); a list of shapes for a
            layer taking a list of arrays (Add, Concat). Give this or `inputs`.
        inputs: the input itself (an array, or a list of arrays) instead of a shape.
        input_maker: (shape, rng) -> array for `input_shape`: normal_input (default),
            off_zero_input, distinct_input, index_input(high), or your own.
        expected_output_shape: the output's shape (a list of shapes for several outputs), checked if given.
        rtol, atol: tolerance of the gradients against finite differences.
        eps: the finite-difference step (computed in float64).
        seed: seeds the input maker, the projections and random layers (dropout).

    Checks:
        forward: output shape; float32 in -> float32 out; finite values.
        infer: infer(x) == forward(x), exactly.
        batch of 1: in eval mode, forward(x[:1]) == forward(x)[:1] up to float32 round-off.
        save/load: save_model + load_model rebuild the same config and forward, exactly.
        dtypes: a float64 input gives float32 or float64 output, an integer input gives float32 or
            float64 (or, for layers that only move values, its own dtype), with the values of the
            same input in float32; or either raises a ValueError naming the layer.
        float32 backward: the input gradient has the input's shape and dtype, and each parameter
            gradient its parameter's shape.
        backward: on a float64 copy, the input gradient (of float inputs) and every parameter
            gradient against central finite differences; a second backward doubles them.
        flat parameters: after parameters_flat() (as the engines pack weights), forward is unchanged,
            backward fills the flat gradient vector, and writing the weight vector changes the layer.
    The layer's weights, buffers, gradients and modes are restored afterwards. Finite differences
    run two forward passes per input value and per parameter: check a small instance of the layer.
    """
    if not isinstance(layer, Module):
        raise ValueError(f"check_layer: expected a bigdl_py.nn.Module as layer, received {type(layer).__name__}")
    if (input_shape is None) == (inputs is None):
        raise ValueError("check_layer: expected exactly one of input_shape and inputs")
    if not callable(input_maker):
        raise ValueError(f"check_layer: expected input_maker to be callable (shape, rng) -> array, "
                         f"received {type(input_maker).__name__}")
    single_input, xs = _inputs(layer, input_shape, inputs, input_maker, np.random.default_rng(seed))
    check = _Checker(layer, single_input, rtol, atol, eps, seed)
    saved = _snapshot(layer)
    try:
        ys = check.forward(xs, expected_output_shape)
        check.infer(xs, ys)
        check.batch_of_one(xs)
        check.save_load(xs, ys)
        check.dtypes(xs, ys)
        check.float32_backward(xs, ys)
        check.backward(xs)
        check.flat_parameters(xs)
    finally:
        _restore(layer, saved)


def _inputs(layer, input_shape, inputs, input_maker, rng):
    """(single input?, list of input arrays) from a shape (or list of shapes) or given arrays."""
    if inputs is not None:
        single = isinstance(inputs, np.ndarray)
        xs = [inputs] if single else list(inputs) if isinstance(inputs, (list, tuple)) else None
        if xs is None or not xs or not all(isinstance(x, np.ndarray) for x in xs):
            raise ValueError(f"check_layer({_describe(layer)}): expected inputs to be a numpy array or a list of "
                             f"them, received {type(inputs).__name__}")
    else:
        single = not (isinstance(input_shape, (list, tuple)) and input_shape
                      and all(isinstance(s, (list, tuple)) for s in input_shape))
        shapes = [input_shape] if single else list(input_shape)
        for s in shapes:
            if not (isinstance(s, (list, tuple)) and s and all(isinstance(d, (int, np.integer)) and d >= 1 for d in s)):
                raise ValueError(f"check_layer({_describe(layer)}): expected input_shape to be a tuple of positive "
                                 f"ints (batch first) or a list of them, received {input_shape!r}")
        xs = [np.asarray(input_maker(tuple(s), rng)) for s in shapes]
    for x in xs:
        if x.ndim == 0 or x.shape[0] < 1 or not (np.issubdtype(x.dtype, np.floating) or
                                                 np.issubdtype(x.dtype, np.integer)):
            raise ValueError(f"check_layer({_describe(layer)}): expected float or integer inputs with a batch axis, "
                             f"received shape {x.shape} dtype {x.dtype}")
    return single, xs


def _describe(layer):
    return f"{type(layer).__name__} '{layer.path}'"


def _snapshot(layer):
    return (layer.state_dict(), {k: g.copy() for k, g in layer.named_gradients()},
            [(m.training, m._forward_seed) for _, m in layer.named_modules()])


def _restore(layer, saved):
    state, grads, modes = saved
    layer.load_state_dict(state)
    live = dict(layer.named_gradients())
    for k, g in grads.items():
        live[k][...] = g
    for (_, m), (mode, forward_seed) in zip(layer.named_modules(), modes):
        m.training, m._forward_seed = mode, forward_seed


def _twin(layer, dtype=None):
    """A new instance from the layer's JSON config with its weights, buffers and modes (in `dtype` if given)."""
    twin = from_config(json.loads(json.dumps(layer.get_config())))
    twin.load_state_dict(layer.state_dict())
    twin._set_path(layer.path)  # dropout masks are drawn per layer path
    for (_, m), (_, source) in zip(twin.named_modules(), layer.named_modules()):
        m.training = source.training
        if dtype is not None:
            for arrays in (m.params, m.grads, m.buffers):
                for k in arrays:
                    if arrays[k].dtype.kind == "f":  # integer state (indices, counters) keeps its type
                        arrays[k] = arrays[k].astype(dtype)
    return twin


class _Checker:
    """The checks of check_layer over one layer; each raises AssertionError naming itself."""

    def __init__(self, layer, single_input, rtol, atol, eps, seed):
        self.layer, self.single_input = layer, single_input
        self.rtol, self.atol, self.eps, self.seed = rtol, atol, eps, seed
        self.where = f"check_layer({_describe(layer)})"

    # ---- helpers -----------------------------------------------------------------------
    def fail(self, check, message):
        raise AssertionError(f"{self.where}: {check}: {message}")

    def run(self, module, xs, method="forward"):
        """Outputs (as a list) of forward or infer, with the forward seed reset so dropout repeats its mask."""
        module.set_forward_seed(self.seed)
        y = getattr(module, method)(xs[0] if self.single_input else list(xs))
        self.single_output = not isinstance(y, (list, tuple))
        return [y] if self.single_output else list(y)

    def grad_arg(self, grads):
        return grads[0] if self.single_output else list(grads)

    def input_grads(self, dx, n):
        """backward's return value as a list of n entries (None: no gradient)."""
        if self.single_input:
            return [dx]
        if dx is None:
            return [None] * n
        if not isinstance(dx, (list, tuple)) or len(dx) != n:
            self.fail("backward", f"expected a list of {n} input gradients, received {type(dx).__name__}")
        return list(dx)

    def close(self, check, what, got, expected, rtol, atol, hint=""):
        """AssertionError naming the worst element when got and expected differ beyond atol + rtol*|expected|."""
        got, expected = np.asarray(got), np.asarray(expected)
        if got.shape != expected.shape:
            self.fail(check, f"{what} has shape {got.shape}, expected {expected.shape}")
        if got.size == 0:
            return
        diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
        excess = np.where(np.isnan(diff), np.inf, diff - (atol + rtol * np.abs(expected.astype(np.float64))))
        if np.any(excess > 0):
            worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
            index = ", ".join(str(int(i)) for i in worst)
            self.fail(check, f"{what}[{index}] = {got[worst].item()!r}, expected {expected[worst].item()!r} "
                             f"(worst of {int(np.sum(excess > 0))} elements beyond atol={atol} + rtol={rtol} * "
                             f"|expected|){hint}")

    def same_outputs(self, check, got, expected, rtol=0.0, atol=0.0):
        if len(got) != len(expected):
            self.fail(check, f"{len(got)} outputs, expected {len(expected)}")
        for i, (a, b) in enumerate(zip(got, expected)):
            self.close(check, f"output {i}" if len(got) > 1 else "output", a, b, rtol, atol)

    # ---- the checks ----------------------------------------------------------------------
    def forward(self, xs, expected_output_shape):
        ys = self.run(self.layer, xs)
        if expected_output_shape is not None:
            expected = [expected_output_shape] if self.single_output else list(expected_output_shape)
            got = [tuple(np.shape(y)) for y in ys]
            if got != [tuple(s) for s in expected]:
                self.fail("forward", f"output shape {got[0] if self.single_output else got}, expected "
                                     f"{expected_output_shape}")
        for i, y in enumerate(ys):
            if not isinstance(y, np.ndarray):
                self.fail("forward", f"output {i} is {type(y).__name__}, expected a numpy array")
            if all(x.dtype == np.float32 for x in xs) and y.dtype != np.float32:
                self.fail("forward", f"float32 input gave a {y.dtype} output {i}, expected float32")
            if not np.isfinite(y).all():
                worst = np.unravel_index(int(np.argmin(np.isfinite(y))), y.shape)
                self.fail("forward", f"output {i} has a non-finite value {y[worst].item()!r} at {worst}")
        return ys

    def infer(self, xs, ys):
        self.same_outputs("infer", self.run(self.layer, xs, "infer"), ys)

    def batch_of_one(self, xs):
        modes = [(m, m.training) for _, m in self.layer.named_modules()]
        self.layer.eval()  # batch statistics and dropout masks depend on the batch by design
        try:
            whole = self.run(self.layer, xs)
            one = self.run(self.layer, [x[:1] for x in xs])
        finally:
            for m, mode in modes:
                m.training = mode
        self.same_outputs("batch of 1", one, [y[:1] for y in whole], rtol=1e-5, atol=1e-6)

    def save_load(self, xs, ys):
        with tempfile.TemporaryDirectory(prefix="check_layer_") as folder:
            try:
                save_model(self.layer, f"{folder}/layer")
                loaded = load_model(f"{folder}/layer")
            except (ValueError, TypeError) as e:  # e.g. a config value JSON cannot hold, an unregistered class
                self.fail("save/load", f"{type(e).__name__}: {e}")
        loaded._set_path(self.layer.path)
        if loaded.get_config() != self.layer.get_config():
            self.fail("save/load", f"config {loaded.get_config()} after loading, expected {self.layer.get_config()}")
        for (_, m), (_, source) in zip(loaded.named_modules(), self.layer.named_modules()):
            m.training = source.training
        self.same_outputs("save/load", self.run(loaded, xs), ys)

    def dtypes(self, xs, ys):
        as_float32 = [x.astype(np.float32) for x in xs]
        reference = ys if all(x.dtype == np.float32 for x in xs) else self.run(self.layer, as_float32)
        self.cast_input("float64 input", [x.astype(np.float64) for x in xs], reference, (np.float32, np.float64))
        if any(x.dtype.kind == "f" for x in xs):
            ints = [np.round(x * 2).astype(np.int64) if x.dtype.kind == "f" else x for x in xs]
            passed = [x.dtype for x in ints]
            self.cast_input("integer input", ints, self.run(self.layer, [x.astype(np.float32) for x in ints]),
                            (np.float32, np.float64, *passed))

    def cast_input(self, check, xs, reference, allowed):
        try:
            got = self.run(self.layer, xs)
        except ValueError as e:
            if self.layer.path in str(e) or type(self.layer).__name__ in str(e):
                return  # refused with a clear error
            self.fail(check, f"raised a ValueError that does not name the layer: {e}")
        for i, y in enumerate(got):
            if np.asarray(y).dtype not in allowed:
                self.fail(check, f"gave a {np.asarray(y).dtype} output {i}, expected one of "
                                 f"{sorted({np.dtype(a).name for a in allowed})}")
        self.same_outputs(check, got, reference, rtol=1e-4, atol=1e-5)

    def float32_backward(self, xs, ys):
        layer = _twin(self.layer)
        self.run(layer, xs)
        dx = self.input_grads(layer.backward(xs[0] if self.single_input else xs,
                                             self.grad_arg([np.ones_like(y) for y in ys])), len(xs))
        for i, (x, g) in enumerate(zip(xs, dx)):
            if g is None or x.dtype.kind != "f":
                continue
            if np.shape(g) != x.shape or np.asarray(g).dtype != x.dtype:
                self.fail("float32 backward", f"input gradient {i} has shape {np.shape(g)} dtype "
                                              f"{np.asarray(g).dtype}, expected {x.shape} {x.dtype}")
        params = dict(layer.named_parameters())
        for name, g in layer.named_gradients():
            if g.shape != params[name].shape:
                self.fail("float32 backward", f"gradient of {name} has shape {g.shape}, expected {params[name].shape}")

    def backward(self, xs):
        layer = _twin(self.layer, np.float64)
        x64 = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in xs]
        ys = self.run(layer, x64)
        for i, y in enumerate(ys):
            if y.dtype.kind == "f" and y.dtype != np.float64:
                self.fail("backward", f"with float64 inputs and weights, output {i} is {y.dtype}; finite differences "
                                      f"need the layer to compute in its input's or weights' float dtype")
        rs = [projection(y.shape, self.seed + i) for i, y in enumerate(ys)]

        def loss(values=x64):
            return float(sum((r * y).sum() for r, y in zip(rs, self.run(layer, values))))

        layer.zero_grad()
        self.run(layer, x64)
        dx = self.input_grads(layer.backward(x64[0] if self.single_input else x64, self.grad_arg(rs)), len(xs))
        once = {name: g.copy() for name, g in layer.named_gradients()}
        for i, x in enumerate(x64):
            if x.dtype.kind != "f" or not layer.input_grad_needed:
                continue  # integer inputs (indices) take no gradient
            if dx[i] is None:
                self.fail("backward", f"returned no gradient for float input {i}")

            def loss_of_input(v, i=i):
                return loss(x64[:i] + [v] + x64[i + 1:])
            what = "input gradient" if len(xs) == 1 else f"gradient of input {i}"
            self.close("backward", what, dx[i], numeric_grad(loss_of_input, x, self.eps), self.rtol, self.atol)
        for name, p in layer.named_parameters():
            def loss_of_param(v, p=p):
                keep = p.copy()
                p[...] = v
                try:
                    return loss()
                finally:
                    p[...] = keep
            numeric = numeric_grad(loss_of_param, p, self.eps)
            hint = "" if numeric.any() else f"; the output does not change with {name}: does the layer read a copy " \
                                            f"of it kept aside?"
            self.close("backward", f"gradient of {name}", once[name], numeric, self.rtol, self.atol, hint)
        self.run(layer, x64)
        layer.backward(x64[0] if self.single_input else x64, self.grad_arg(rs))
        for name, g in layer.named_gradients():
            self.close("backward accumulates", f"gradient of {name} after two backward calls", g, 2 * once[name],
                       1e-9, 1e-12)

    def flat_parameters(self, xs):
        layer = _twin(self.layer)
        ys = self.run(layer, xs)
        weights, grads = layer.parameters_flat()
        if weights.size != layer.num_parameters():
            self.fail("flat parameters", f"flat vector of {weights.size} values, expected {layer.num_parameters()}")
        self.same_outputs("flat parameters", self.run(layer, xs), ys)
        layer.backward(xs[0] if self.single_input else xs, self.grad_arg([np.ones_like(y) for y in ys]))
        by_layer = [g.reshape(-1) for _, g in layer.named_gradients()]
        self.close("flat parameters", "flat gradient vector", grads,
                   np.concatenate(by_layer) if by_layer else np.zeros(0, np.float32), 0.0, 0.0)
        if weights.size:
            weights *= 0.5  # the layer must read its weights from the vector, not from arrays it kept aside
            expected = _twin(layer)
            self.same_outputs("flat parameters (after writing the weight vector)", self.run(layer, xs),
                              self.run(expected, xs))
