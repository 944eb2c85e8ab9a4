"""Inference-time fusion: fold eval-mode BatchNorms into the layer before them, fuse ReLUs into their producer.

The pass rewrites a model's config (`get_config()`: JSON) and its state dict, then
builds a new model from the two, so the input model is never touched and the result
is an ordinary model (config + weights: save_model, save_onnx and from_config work).
A rewrite merges a consumer into the layer that produces its input, and only where
that layer's output reaches nothing else (in a graph: read by one layer and not a model
output; in a Sequential: always), so every value the rest of the model reads is the
same function of the input as before:

- Conv2d (no fused activation) -> BatchNorm: the convolution gets the BatchNorm's scale
  in its weights, its shift in a bias, and the BatchNorm's fused ReLU, if any.
- Linear -> BatchNorm: the same fold; a fused ReLU of the BatchNorm stays as a ReLU layer.
- Conv2d -> ReLU / ReLU6, BatchNorm -> ReLU, Add -> ReLU: the activation runs inside the
  producer's kernel (its `activation` argument), one pass over the output less.

Rewrites chain (Conv2d -> BatchNorm -> ReLU6 becomes one Conv2d) and reach into nested
Sequential and graph Model containers; a pattern that spans a container boundary is
left alone. Every kept layer keeps its name, so parameter names do not change.
"""
import numpy as np

from bigdl_py.nn.layers.activations import ReLU
from bigdl_py.nn.module import from_config

# Producer class -> the activations its kernel can apply (its `activation` argument).
_ACTIVATION_SLOTS = {"Conv2d": ("relu", "relu6"), "BatchNorm": ("relu",), "Add": ("relu",)}
# Activation layer class -> the `activation` value that replaces it.
_ACTIVATION_LAYERS = {"ReLU": "relu", "ReLU6": "relu6"}


def fuse_for_inference(model):
    """A new model, in eval mode, that computes what `model.eval()` computes with fewer layers.

    Every Conv2d or Linear whose output only feeds a BatchNorm has that BatchNorm
    (with its running statistics) folded into its weights and bias, and a ReLU or ReLU6
    that alone reads a Conv2d, BatchNorm or Add runs inside that layer's kernel. Outputs
    agree with the original's in eval mode to float32 round-off. The result is for
    inference: trained further, it would lack the BatchNorms' batch statistics.

    Args:
        model: any Module; Sequential and graph Model containers (nested too) are rewritten,
            other layers are copied as they are.
    Returns:
        a new Module; `model` is left unchanged (weights, buffers, mode).

    Example:
        >>> fast = fuse_for_inference(zoo.resnet20())   # its 21 BatchNorms folded into the convolutions
        >>> save_model(fast, "resnet20_inference")
    """
    state = model.state_dict()
    fused = from_config(_fuse(model.get_config(), state, ""))
    fused.load_state_dict(state)
    return fused.eval()


def fold_batchnorm(weight, bias, gamma, beta, mean, var, eps, out_axis):
    """(weight, bias) of a layer that computes BatchNorm(layer(x)) with the BatchNorm's running statistics.

    gamma * (w x + b - mean) / sqrt(var + eps) + beta is w' x + b' with w scaled by
    s = gamma / sqrt(var + eps) along the output axis `out_axis` of `weight` and
    b' = beta + (b - mean) * s (b = 0 without a bias). Computed in float64, returned as float32.
    """
    s = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    shape = [1] * np.ndim(weight)
    shape[out_axis] = s.size
    w = np.asarray(weight, np.float64) * s.reshape(shape)
    b = 0.0 if bias is None else np.asarray(bias, np.float64)
    return w.astype(np.float32), (np.asarray(beta, np.float64) + (b - np.asarray(mean, np.float64)) * s).astype(
        np.float32)


# ---- config rewriting ---------------------------------------------------------------
def _is(entry, class_name):
    """Whether a layer config is of the built-in class `class_name` (a user's class of the same name is not)."""
    return entry.get("class_name") == class_name and "module" not in entry


def _fuse(entry, state, prefix):
    """The rewritten config of a module at dotted `prefix` (state is rewritten in place)."""
    if _is(entry, "Sequential"):
        return _fuse_sequential(entry, state, prefix)
    if _is(entry, "Model"):
        return _fuse_graph(entry, state, prefix)
    return entry


def _named(entry, key):
    """The layer config with its container key as its name, so the key survives layers removed before it."""
    if "name" in entry.get("config", {}) and entry["config"]["name"] is None:
        entry = {**entry, "config": {**entry["config"], "name": key}}
    return entry


def _fuse_sequential(entry, state, prefix):
    layers = []  # [key, config] of the rewritten chain
    for i, layer in enumerate(entry["config"]["layers"]):
        key = layer.get("config", {}).get("name") or str(i)
        layer = _fuse(layer, state, f"{prefix}{key}.")
        merged = _merge(*layers[-1], key, layer, state, prefix) if layers else None
        if merged is None:
            layers.append([key, layer])
        else:
            layers[-1][1] = merged[0]
            if merged[1] is not None:
                layers.append([key, merged[1]])
    return {**entry, "config": {**entry["config"], "layers": [_named(layer, key) for key, layer in layers]}}


def _fuse_graph(entry, state, prefix):
    config = entry["config"]
    specs = [dict(spec, layer=_fuse(spec["layer"], state, f"{prefix}{spec['name']}.")) for spec in config["layers"]]
    by_name = {spec["name"]: spec for spec in specs}
    readers = {}  # node name -> how many times a layer or the model output reads it
    for name in [k for spec in specs for k in spec["inbound"]] + list(config["outputs"]):
        readers[name] = readers.get(name, 0) + 1
    alias = {}  # removed node -> the node that now computes its value
    kept = []
    for spec in specs:
        spec["inbound"] = [alias.get(k, k) for k in spec["inbound"]]
        source = by_name.get(spec["inbound"][0]) if len(spec["inbound"]) == 1 and not spec["multi"] else None
        merged = None
        if source is not None and readers[source["name"]] == 1:
            merged = _merge(source["name"], source["layer"], spec["name"], spec["layer"], state, prefix)
        if merged is None:
            kept.append(spec)
            continue
        source["layer"] = merged[0]
        if merged[1] is None:
            alias[spec["name"]] = source["name"]
            readers[source["name"]] = readers.get(spec["name"], 0)
        else:
            spec["layer"] = merged[1]
            kept.append(spec)
    layers = [dict(spec, layer=_named(spec["layer"], spec["name"])) for spec in kept]
    outputs = [alias.get(k, k) for k in config["outputs"]]
    return {**entry, "config": {**config, "layers": layers, "outputs": outputs}}


def _merge(key, layer, next_key, next_layer, state, prefix):
    """(layer's new config, next layer's new config or None when it is gone) where layer -> next_layer
    fuses, else None. Moves the weights in `state` (names under `prefix`)."""
    bn = _is(next_layer, "BatchNorm")
    if bn and (_is(layer, "Linear") or (_is(layer, "Conv2d") and layer["config"]["activation"] is None)):
        return _fold(key, layer, next_key, next_layer, state, prefix)
    activation = next((a for c, a in _ACTIVATION_LAYERS.items() if _is(next_layer, c)), None)
    slots = next((s for c, s in _ACTIVATION_SLOTS.items() if _is(layer, c)), ())
    if activation in slots and layer["config"]["activation"] is None:
        return {**layer, "config": {**layer["config"], "activation": activation}}, None
    return None


def _fold(key, layer, bn_key, bn, state, prefix):
    """Conv2d or Linear `layer` with BatchNorm `bn` folded in (see fold_batchnorm)."""
    p, q = f"{prefix}{key}.", f"{prefix}{bn_key}."
    stats = [state.pop(q + k) for k in ("weight", "bias", "running_mean", "running_var")]
    conv = _is(layer, "Conv2d")  # HWIO weight: output channels last; Linear's (out, in): first
    state[p + "weight"], state[p + "bias"] = fold_batchnorm(state[p + "weight"], state.get(p + "bias"), *stats,
                                                            bn["config"]["eps"], -1 if conv else 0)
    relu = bn["config"]["activation"]
    if conv:
        return {**layer, "config": {**layer["config"], "bias": True, "activation": relu}}, None
    return ({**layer, "config": {**layer["config"], "bias": True}},
            None if relu is None else ReLU(name=bn_key).get_config())
