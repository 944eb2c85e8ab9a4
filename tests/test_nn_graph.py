"""Graph models: DAG forward/backward (residual, inception-style, multi-input/output), naming, configs."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bigdl_py import nn
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.graph import Add, Concat, Input, Model, Node
from bigdl_py.testing import numeric_grad, projection
from tests.test_nn_containers import _Scale, to_float64


def torch_conv_weight(w):
    """A torch (Cout, Cin, KH, KW) weight in our HWIO layout."""
    return w.detach().numpy().transpose(2, 3, 1, 0).copy()


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def diamond_model():
    """Two inputs, two outputs; nodes a, b, c each feed several consumers."""
    x1, x2 = Input((3,), name="x1"), Input((3,), name="x2")
    a = nn.Linear(3, 4)(x1)
    b = nn.Tanh()(a)
    c = Add()([a, b, nn.Linear(3, 4)(x2)])
    out1 = nn.Linear(8, 2)(Concat()([c, b]))
    out2 = nn.Sigmoid()(c)
    return Model([x1, x2], [out1, out2])


def test_multi_input_output_graph_matches_finite_differences():
    model = to_float64(diamond_model())
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, 3)), rng.standard_normal((2, 3))]
    r = [projection((2, 2), 1), projection((2, 4), 2)]

    def loss(inputs):
        y1, y2 = model.forward(inputs)
        return float((y1 * r[0]).sum() + (y2 * r[1]).sum())

    model.zero_grad()
    outs = model.forward(xs)
    assert isinstance(outs, list) and [o.shape for o in outs] == [(2, 2), (2, 4)]
    dxs = model.backward(xs, r)
    for i in range(2):
        def loss_i(v, i=i):
            return loss([v if j == i else xs[j] for j in range(2)])
        np.testing.assert_allclose(dxs[i], numeric_grad(loss_i, xs[i], eps=1e-5), rtol=1e-6, atol=1e-7)
    grads = dict(model.named_gradients())
    for name, p in model.named_parameters():
        def loss_p(v, p=p):
            keep = p.copy()
            p[...] = v
            try:
                return loss(xs)
            finally:
                p[...] = keep
        np.testing.assert_allclose(grads[name], numeric_grad(loss_p, p.copy(), eps=1e-5), rtol=1e-6, atol=1e-7,
                                   err_msg=name)


def test_add_with_fused_relu_of_three_inputs_matches_finite_differences():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((3, 4)) for _ in range(3)]
    add = Add(activation="relu")
    y = add.forward(xs)
    np.testing.assert_array_equal(y, np.maximum(xs[0] + xs[1] + xs[2], 0))
    r = rng.standard_normal(y.shape)
    grads = add.backward(xs, r)
    for i in range(3):
        def loss(v, i=i):
            return float(np.sum(r * Add(activation="relu").forward(xs[:i] + [v] + xs[i + 1:])))
        np.testing.assert_allclose(grads[i], numeric_grad(loss, xs[i], eps=1e-6), rtol=1e-6, atol=1e-8)
    assert Add.from_config(add.get_config()["config"]).config == {"activation": "relu"}
    with pytest.raises(ValueError, match="backward called before forward"):
        Add(activation="relu").backward(xs, r)
    with pytest.raises(ValueError, match="activation: expected None or 'relu'"):
        Add(activation="tanh")


@pytest.mark.parametrize("dtypes", [("float32", "float64"), ("float64", "float32"),
                                    ("float32", "float32", "float64")])
def test_add_with_fused_relu_promotes_mixed_dtypes_as_the_unfused_sum(dtypes):
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((2, 5)).astype(d) for d in dtypes]
    y = Add(activation="relu").forward(xs)
    unfused = Add().forward(xs)
    assert y.dtype == unfused.dtype == np.float64
    np.testing.assert_array_equal(y, np.maximum(unfused, 0))
    np.testing.assert_array_equal(unfused, sum(x.astype(np.float64) for x in xs))


def test_custom_module_node_used_twice_by_one_layer():
    x = Input((2,))
    s = _Scale(2)(x)
    model = Model(x, Add()([s, s]))
    v = np.array([[0.2, -0.4]])
    np.testing.assert_allclose(model.forward(v), 2 * np.tanh(v * np.linspace(0.5, 1.5, 2)))
    g = model.backward(v, np.ones((1, 2)))
    np.testing.assert_allclose(g, numeric_grad(lambda u: float(model.forward(u).sum()), v, eps=1e-6), rtol=1e-6)


def residual_pair(c=4, seed=0, fused=False):
    torch.manual_seed(seed)
    conv1, conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False), torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
    bn1, bn2 = torch.nn.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
    with torch.no_grad():
        for bn in (bn1, bn2):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)

    def ref(t):
        return F.relu(bn2(conv2(F.relu(bn1(conv1(t))))) + t)

    x = Input((None, None, c))
    y = nn.Conv2d(c, c, 3, padding=1, bias=False, name="conv1")(x)
    # fused: the ReLUs inside the BatchNorm and Add kernels, as in zoo.resnet20
    y = nn.BatchNorm(c, activation="relu", name="bn1")(y) if fused else nn.ReLU()(nn.BatchNorm(c, name="bn1")(y))
    y = nn.BatchNorm(c, name="bn2")(nn.Conv2d(c, c, 3, padding=1, bias=False, name="conv2")(y))
    model = Model(x, Add(activation="relu")([y, x]) if fused else nn.ReLU()(Add()([y, x])))
    state = {"conv1.weight": torch_conv_weight(conv1.weight), "conv2.weight": torch_conv_weight(conv2.weight)}
    for name, bn in (("bn1", bn1), ("bn2", bn2)):
        state.update({f"{name}.{k}": v.detach().numpy().copy() for k, v in bn.state_dict().items()
                      if k != "num_batches_tracked"})
    model.load_state_dict(state)
    torch_params = {"conv1.weight": conv1.weight, "conv2.weight": conv2.weight, "bn1.weight": bn1.weight,
                    "bn1.bias": bn1.bias, "bn2.weight": bn2.weight, "bn2.bias": bn2.bias}
    return model, ref, torch_params, (bn1, bn2)


@pytest.mark.parametrize("fused", [False, True], ids=["relu-layers", "relu-fused"])
@pytest.mark.parametrize("training", [True, False])
def test_residual_block_matches_torch(training, fused):
    model, ref, torch_params, bns = residual_pair(fused=fused)
    model.train(training)
    for bn in bns:
        bn.train(training)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    g = rng.standard_normal((2, 5, 5, 4)).astype(np.float32)
    xt = nchw(x).requires_grad_()
    yt = ref(xt)
    yt.backward(nchw(g))
    np.testing.assert_allclose(model.forward(x), nhwc(yt), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.backward(x, g), nhwc(xt.grad), rtol=1e-4, atol=1e-4)
    grads = dict(model.named_gradients())
    for name, p in torch_params.items():
        want = torch_conv_weight(p.grad) if p.ndim == 4 else p.grad.numpy()
        np.testing.assert_allclose(grads[name], want, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(model.state_dict()["bn1.running_mean"], bns[0].running_mean.numpy(), rtol=1e-5,
                               atol=1e-6)


def test_residual_block_matches_finite_differences():
    model, _, _, _ = residual_pair(c=2)
    model = to_float64(model.train())
    x = np.random.default_rng(2).standard_normal((2, 3, 3, 2))
    r = projection((2, 3, 3, 2), 3)
    model.forward(x)
    dx = model.backward(x, r)
    np.testing.assert_allclose(dx, numeric_grad(lambda v: float((model.forward(v) * r).sum()), x, eps=1e-5),
                               rtol=1e-5, atol=1e-6)


def test_inception_style_concat_matches_torch():
    torch.manual_seed(4)
    b1, b2 = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 2, 3, padding=1)
    b3 = torch.nn.Conv2d(3, 3, 1)

    def ref(t):
        return torch.cat([b1(t), F.relu(b2(t)), b3(F.max_pool2d(t, 3, stride=1, padding=1))], dim=1)

    x = Input((6, 6, 3))
    branches = [nn.Conv2d(3, 4, 1, name="b1")(x), nn.Conv2d(3, 2, 3, padding=1, activation="relu", name="b2")(x),
                nn.Conv2d(3, 3, 1, name="b3")(nn.MaxPool2d(3, stride=1, padding=1)(x))]
    model = Model(x, Concat(axis=-1)(branches))
    state = {}
    for name, conv in (("b1", b1), ("b2", b2), ("b3", b3)):
        state[f"{name}.weight"] = torch_conv_weight(conv.weight)
        state[f"{name}.bias"] = conv.bias.detach().numpy().copy()
    model.load_state_dict(state)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    g = rng.standard_normal((2, 6, 6, 9)).astype(np.float32)
    xt = nchw(x).requires_grad_()
    yt = ref(xt)
    yt.backward(nchw(g))
    np.testing.assert_allclose(model.forward(x), nhwc(yt), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.backward(x, g), nhwc(xt.grad), rtol=1e-4, atol=1e-5)
    grads = dict(model.named_gradients())
    for name, conv in (("b1", b1), ("b2", b2), ("b3", b3)):
        np.testing.assert_allclose(grads[f"{name}.weight"], torch_conv_weight(conv.weight.grad), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(grads[f"{name}.bias"], conv.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_children_named_by_name_or_class_and_index_in_topological_order():
    x = Input((3,))
    y = nn.Linear(2, 2)(nn.ReLU()(nn.Linear(3, 2, name="first")(x)))
    model = Model(x, nn.Linear(2, 1)(y))
    assert [k for k, _ in model.children()] == ["first", "ReLU_0", "Linear_0", "Linear_1"]


@pytest.mark.parametrize("build, message", [
    (lambda x, m: Add()([m(x), m(x)]), "may appear only once"),
    (lambda x, m: nn.Tanh(name="t")(nn.ReLU(name="t")(x)), "two graph elements named 't'"),
    (lambda x, m: Add()([x, m(Input((3,)))]), "not in inputs"),
])
def test_invalid_graphs_are_refused(build, message):
    x = Input((3,))
    with pytest.raises(ValueError, match=message):
        Model(x, build(x, nn.Linear(3, 3)))


def test_input_shape_and_count_are_checked():
    model = diamond_model()
    with pytest.raises(ValueError, match="expected input 'x2' shape \\(N, 3\\)"):
        model.forward([np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match="expected a list of 2 arrays"):
        model.forward(np.ones((2, 3), np.float32))


def test_add_and_concat_refuse_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        Add()([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="cannot join"):
        Concat()([np.ones((2, 3, 1)), np.ones((2, 4, 1))])


def test_modules_still_run_forward_on_arrays_and_build_nodes_on_nodes():
    layer = nn.Linear(3, 2)
    assert isinstance(layer(Input((3,))), Node)
    assert layer(np.ones((1, 3), np.float32)).shape == (1, 2)
    assert Add()([np.ones((1, 2)), np.ones((1, 2))]).sum() == 4


def test_unused_input_gets_zero_gradient():
    a, b = Input((2,)), Input((2,))
    model = Model([a, b], nn.Tanh()(a))
    xs = [np.ones((1, 2), np.float32), np.full((1, 2), 3.0, np.float32)]
    model.forward(xs)
    ga, gb = model.backward(xs, np.ones((1, 2), np.float32))
    assert np.all(ga > 0) and np.all(gb == 0)


def test_nested_model_and_sequential_inside_a_graph():
    inner_x = Input((4,))
    inner = Model(inner_x, Add()([inner_x, nn.Linear(4, 4, name="fc")(inner_x)]), name="res")
    x = Input((4,))
    model = Model(x, Sequential(nn.ReLU(), nn.Linear(4, 2), name="head")(inner(x)))
    assert [k for k, _ in model.named_parameters()] == ["res.fc.weight", "res.fc.bias", "head.1.weight",
                                                        "head.1.bias"]
    model = to_float64(model)
    v = np.random.default_rng(6).standard_normal((3, 4))
    r = projection((3, 2), 7)
    model.forward(v)
    np.testing.assert_allclose(model.backward(v, r),
                               numeric_grad(lambda u: float((model.forward(u) * r).sum()), v, eps=1e-5), rtol=1e-6,
                               atol=1e-8)


def test_config_round_trip_through_json_rebuilds_the_dag():
    model = diamond_model()
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = nn.from_config(config)
    assert rebuilt.get_config() == model.get_config()
    rebuilt.load_state_dict(model.state_dict())
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(2)]
    for a, b in zip(model.forward(xs), rebuilt.forward(xs)):
        np.testing.assert_array_equal(a, b)


def test_config_with_undefined_inbound_is_refused():
    config = diamond_model().get_config()
    config["config"]["layers"][0]["inbound"] = ["nowhere"]
    with pytest.raises(ValueError, match="nowhere"):
        nn.from_config(config)


def test_backward_before_forward_is_an_error():
    x = Input((2,))
    with pytest.raises(ValueError, match="before forward"):
        Model(x, nn.ReLU()(x)).backward(np.ones((1, 2)), np.ones((1, 2)))


def backbone_with_a_head():
    """image -> conv -> relu -> pool -> fc (the head to replace), all layers named."""
    x = Input((6, 6, 2), name="image")
    pooled = nn.GlobalAvgPool2d(name="pool")(nn.ReLU(name="relu")(nn.Conv2d(2, 4, 3, name="conv")(x)))
    return Model(x, nn.Linear(4, 10, name="fc")(pooled))


def test_node_by_name_builds_a_new_head_on_shared_layers():
    backbone = backbone_with_a_head().freeze()
    features = backbone.node("pool")
    assert backbone.node("image").is_input and features.module is dict(backbone.children())["pool"]
    model = Model(backbone.node("image"), nn.Linear(4, 3, name="head")(features))
    assert [k for k, _ in model.children()] == ["conv", "relu", "pool", "head"]
    conv = dict(model.children())["conv"]
    assert conv is dict(backbone.children())["conv"] and conv.frozen  # the same layer, still frozen
    assert not dict(model.children())["head"].frozen
    assert model.frozen_ranges() == [[0, conv.num_parameters()]]
    x = np.random.default_rng(9).standard_normal((2, 6, 6, 2)).astype(np.float32)
    head = dict(model.children())["head"]
    pooled = x  # the shared layers compute what they computed inside the backbone
    for name in ("conv", "relu", "pool"):
        pooled = dict(backbone.children())[name].forward(pooled)
    np.testing.assert_array_equal(model.forward(x), head.forward(pooled))
    model.parameters_flat()
    model.set_input_grad_needed(False)
    model.backward(x, np.ones((2, 3), np.float32))
    grads = dict(model.named_gradients())
    assert not grads["conv.weight"].any() and grads["head.weight"].any()
    rebuilt = nn.from_config(json.loads(json.dumps(model.get_config())))
    assert rebuilt.frozen_ranges() == model.frozen_ranges()


def test_node_with_an_unknown_name_is_refused_listing_the_names():
    with pytest.raises(ValueError, match=r"node: expected the name of an input or a layer, received 'fc2'; "
                                         r"known: \['image', 'conv', 'relu', 'pool', 'fc'\]"):
        backbone_with_a_head().node("fc2")
