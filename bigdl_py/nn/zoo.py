"""Reference models, channels-last (NHWC) inputs.

Every builder takes `seed=None`: with a seed the weights are drawn from
`np.random.default_rng(seed)` (same seed, same weights); without one from the
generator that `bigdl_py.nn.init.manual_seed` controls.
"""
import numpy as np

from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.graph import Add, Input, Model
from bigdl_py.nn.layers import (ELU, LSTM, BatchNorm, Conv2d, Dropout, Embedding, Flatten, GlobalAvgPool2d,
                                LeakyReLU, Linear, MaxPool2d, ReLU, ReLU6, Sigmoid, Tanh, ZeroPad2d)

_ACTIVATIONS = {"relu": ReLU, "relu6": ReLU6, "tanh": Tanh, "sigmoid": Sigmoid, "elu": ELU,
                "leaky_relu": LeakyReLU}


def _seeded(model, seed):
    """Redraw every layer's weights from one generator seeded with `seed` (in module order)."""
    if seed is not None:
        rng = np.random.default_rng(seed)
        for _, m in model.named_modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters(rng)
    return model


def lenet5(num_classes=10, seed=None):
    """Classic LeNet-5 for 28x28 greyscale digits.

    Conv 1->6 5x5 + ReLU, max-pool 2, conv 6->16 5x5 + ReLU, max-pool 2, then
    fully connected 256 -> 120 -> 84 -> num_classes with ReLUs.
    Shape: x (N, 28, 28, 1) -> logits (N, num_classes).
    """
    model = Sequential(
        Conv2d(1, 6, 5, activation="relu"), MaxPool2d(2),
        Conv2d(6, 16, 5, activation="relu"), MaxPool2d(2),
        Flatten(),
        Linear(256, 120), ReLU(),
        Linear(120, 84), ReLU(),
        Linear(84, num_classes),
    )
    return _seeded(model, seed)


def mlp(sizes=(64, 256, 128, 64, 2), activation="relu", dropout=0.0, seed=None):
    """Fully connected network: Linear layers of `sizes`, an activation (and dropout) between them.

    Args:
        sizes: [inputs, hidden..., outputs], at least two entries.
        activation: one of relu, relu6, tanh, sigmoid, elu, leaky_relu.
        dropout: drop probability after each hidden activation (0: none).
    Shape: x (N, sizes[0]) -> y (N, sizes[-1]).
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes: expected at least 2 layer sizes, received {sizes!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, received {activation!r}")
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
            if dropout:
                layers.append(Dropout(dropout))
    return _seeded(Sequential(*layers), seed)


def _conv_bn(x, cin, cout, kernel, stride, name, relu=True):
    """conv (no bias) -> BatchNorm [with its ReLU fused] on graph node x."""
    x = Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False, name=f"{name}_conv")(x)
    return BatchNorm(cout, activation="relu" if relu else None, name=f"{name}_bn")(x)


def _basic_block(x, cin, cout, stride, name):
    """He et al. basic block: two 3x3 conv-BN, identity or 1x1 conv-BN projection shortcut, add, ReLU."""
    y = _conv_bn(x, cin, cout, 3, stride, f"{name}_1")
    y = _conv_bn(y, cout, cout, 3, 1, f"{name}_2", relu=False)
    shortcut = x if stride == 1 and cin == cout else _conv_bn(x, cin, cout, 1, stride, f"{name}_shortcut",
                                                               relu=False)
    return Add(activation="relu", name=f"{name}_add")([y, shortcut])


def resnet20(num_classes=10, seed=None, zero_init_residual=False):
    """ResNet-20 for CIFAR (He et al. 2016, section 4.2), built with the graph API.

    3x3 conv 16 + BN + ReLU, three stages of three basic blocks with 16, 32, 64
    channels (stride 2 at the start of stages 2 and 3, 1x1 conv + BN projection
    shortcut where the shape changes: option B), global average pool, Linear.
    Layers are named `stage{s}_block{b}_{1|2|shortcut}_{conv|bn}` and `stage{s}_block{b}_add`;
    each ReLU runs inside the BatchNorm or Add before it (one pass over the activations less).
    zero_init_residual: start each block's last BatchNorm scale at 0, so every residual
        branch starts as nothing and each block as its shortcut (Goyal et al. 2017, for
        large-batch training; torchvision's option of the same name).
    Shape: x (N, 32, 32, 3) -> logits (N, num_classes).
    """
    inp = Input((32, 32, 3), name="image")
    x = _conv_bn(inp, 3, 16, 3, 1, "stem")
    cin = 16
    for stage, width in enumerate((16, 32, 64), start=1):
        for block in range(3):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, cin, width, stride, f"stage{stage}_block{block}")
            cin = width
    x = GlobalAvgPool2d(name="pool")(x)
    out = Linear(64, num_classes, name="fc")(x)
    model = _seeded(Model(inp, out, name="resnet20"), seed)
    if zero_init_residual:
        for name, m in model.named_modules():
            if name.endswith("_2_bn"):
                m.params["weight"].fill(0.0)
    return model


# EfficientNet-Lite0 blocks: (repeats, kernel, stride, expand ratio, in, out), from
# efficientnet_lite_builder.py: 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...
_LITE0_BLOCKS = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                 (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
# TF-trained weights: BN eps 1e-3, and TF's momentum 0.99 is torch's 0.01.
_BN = {"eps": 1e-3, "momentum": 0.01}


def _same_conv(cin, cout, kernel, stride, groups, name):
    """Conv (no bias) with TensorFlow "SAME" padding: [pad,] conv. Stride 2 pads (k-2)//2 top/left, the rest
    bottom/right (exact for inputs whose sizes stay even at every stride-2 stage, e.g. 224)."""
    if stride == 1:
        return [Conv2d(cin, cout, kernel, padding=(kernel - 1) // 2, groups=groups, bias=False, name=name)]
    lo, hi = (kernel - 2) // 2, kernel - 2 - (kernel - 2) // 2
    return [ZeroPad2d((lo, hi, lo, hi), name=f"{name}_pad"),
            Conv2d(cin, cout, kernel, stride=stride, groups=groups, bias=False, name=name)]


def _bn(channels, name, relu6=None):
    """BatchNorm `name`, then the ReLU6 layer named `relu6` (if any)."""
    return [BatchNorm(channels, name=name, **_BN)] + ([ReLU6(name=relu6)] if relu6 else [])


def _mbconv(cin, cout, kernel, stride, expand):
    """Inverted residual: [expand 1x1 + BN + ReLU6,] depthwise kxk + BN + ReLU6, project 1x1 + BN, [+ x].

    Names follow efficientnet_lite_pytorch's MBConvBlock (_expand_conv, _bn0,
    _depthwise_conv, _bn1, _project_conv, _bn2) so its state dict maps by name.
    """
    mid = cin * expand
    layers = []
    if expand != 1:
        layers += [Conv2d(cin, mid, 1, bias=False, name="_expand_conv"), *_bn(mid, "_bn0", "_swish0")]
    layers += [*_same_conv(mid, mid, kernel, stride, mid, "_depthwise_conv"), *_bn(mid, "_bn1", "_swish1")]
    layers += [Conv2d(mid, cout, 1, bias=False, name="_project_conv"), *_bn(cout, "_bn2")]
    if stride != 1 or cin != cout:
        return Sequential(*layers)
    x = inp = Input((None, None, cin), name="inputs")
    for layer in layers:
        x = layer(x)
    return Model(inp, Add(name="_skip")([x, inp]))


def efficientnet_lite0(num_classes=1000, dropout=0.2, seed=None):
    """EfficientNet-Lite0 (Tan & Le 2019, Lite variant: ReLU6, no squeeze-excite, fixed stem/head).

    Stem 3x3 stride-2 conv to 32 channels, 16 MBConv blocks, head 1x1 conv to
    1280, global average pool, dropout, Linear 1280 -> num_classes. Module and
    parameter names match efficientnet_lite_pytorch (`_conv_stem.weight`,
    `_blocks.3._depthwise_conv.weight`, `_fc.bias`, ...), so a PyTorch state dict
    imports by name (convolution weights transposed to HWIO). Stochastic depth
    (drop-connect) is not applied. For inference, `bigdl_py.nn.fuse_for_inference`
    folds every BatchNorm into its convolution and runs each ReLU6 in the convolution
    kernel, which saves two passes over most activations.
    Shape: x (N, 224, 224, 3) -> logits (N, num_classes); any size divisible by 32 works.
    """
    blocks = []
    for repeats, kernel, stride, expand, cin, cout in _LITE0_BLOCKS:
        for r in range(repeats):
            blocks.append(_mbconv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
    model = Sequential(
        *_same_conv(3, 32, 3, 2, 1, "_conv_stem"), *_bn(32, "_bn0", "_stem_swish"),
        Sequential(*blocks, name="_blocks"),
        Conv2d(320, 1280, 1, bias=False, name="_conv_head"), *_bn(1280, "_bn1", "_head_swish"),
        GlobalAvgPool2d(name="_avg_pooling"),
        *([Dropout(dropout, name="_dropout")] if dropout else []),
        Linear(1280, num_classes, name="_fc"),
        name="efficientnet_lite0",
    )
    return _seeded(model, seed)


def lstm_classifier(vocab_size, embed_dim, hidden, num_classes, seed=None):
    """Token ids -> Embedding -> LSTM (last step's hidden state) -> Linear.

    Shape: x (N, T) integer token ids -> logits (N, num_classes).
    """
    model = Sequential(
        Embedding(vocab_size, embed_dim),
        LSTM(embed_dim, hidden),
        Linear(hidden, num_classes),
    )
    return _seeded(model, seed)
