"""Import PyTorch weights into a matching bigdl_py model, by name and shape.

Layouts differ only for convolutions: torch keeps (Cout, Cin/groups, KH, KW),
we keep HWIO (KH, KW, Cin/groups, Cout), so every Conv2d weight is transposed
with `w.transpose(2, 3, 1, 0)` (depthwise ones too: (C, 1, KH, KW) -> (KH, KW, 1, C)).
Linear weights (out, in), biases and BatchNorm weight/bias/running_mean/running_var
are the same in both. BatchNorm's `num_batches_tracked` counter has no use here
and is skipped.

`read_torch_weights` is the only place in the library that imports torch.
"""
import numpy as np

from bigdl_py.nn.layers.conv import Conv2d

SKIPPED_SUFFIXES = (".num_batches_tracked",)


def read_torch_weights(path):
    """{name: float ndarray} from a PyTorch state-dict file (.pt/.pth).

    Uses `torch.load(..., weights_only=True)`, which refuses pickled code, so
    reading a file cannot run it. torch is imported here only.

    Raises:
        ValueError naming the file if it is missing, unreadable or not a state dict.
    """
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path}: reading a PyTorch weights file needs torch (pip install torch)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a PyTorch weights file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    tensors = {k: v for k, v in state.items() if hasattr(v, "detach")} if isinstance(state, dict) else {}
    if not tensors:
        raise ValueError(f"{path}: expected a dict of tensors (a state dict), found {type(state).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in tensors.items()}


def _as_numpy(name, value):
    array = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"state dict entry {name!r}: expected a numeric tensor, found dtype {array.dtype}")
    return array


def _rename(name_map, name):
    if name_map is None:
        return name
    return name_map(name) if callable(name_map) else name_map.get(name, name)


def _conv_weight_names(model):
    """Our names of Conv2d weights: those are transposed from torch's OIHW."""
    return {f"{prefix}.weight" if prefix else "weight"
            for prefix, m in model.named_modules() if isinstance(m, Conv2d)}


def convert_torch_state_dict(model, state_dict, name_map=None):
    """{our name: array in our layout} for `model`, after checking every tensor.

    Args:
        model: the bigdl_py Module to load into.
        state_dict: {torch name: torch tensor or ndarray}.
        name_map: None (same names), {torch name: our name}, or a function
            torch name -> our name (return None to drop a tensor).
    Raises:
        ValueError listing every missing, unexpected and mis-shaped tensor.
    """
    targets = dict(model.named_parameters())
    targets.update(model.named_buffers())
    convs = _conv_weight_names(model)
    converted, sources, unexpected, misshaped, seen = {}, {}, [], [], set()
    for torch_name, value in state_dict.items():
        if torch_name.endswith(SKIPPED_SUFFIXES):
            continue
        ours = _rename(name_map, torch_name)
        if ours is None:
            continue
        if ours not in targets:
            unexpected.append(torch_name)
            continue
        seen.add(ours)
        array = _as_numpy(torch_name, value)
        if ours in convs and array.ndim == 4:
            array = array.transpose(2, 3, 1, 0)
        if array.shape != targets[ours].shape:
            torch_shape = tuple(np.shape(value))
            misshaped.append(f"{torch_name} -> {ours}: model expects {targets[ours].shape}, "
                             f"received torch shape {torch_shape}" + (f" (as HWIO {array.shape})"
                                                                      if ours in convs else ""))
            continue
        if ours in converted:
            unexpected.append(f"{torch_name} (a second tensor for {ours}, after {sources[ours]})")
            continue
        converted[ours], sources[ours] = array, torch_name
    missing = sorted(set(targets) - seen)
    if missing or unexpected or misshaped:
        raise ValueError(f"PyTorch state dict does not match model '{model.path}': "
                         f"missing {missing}, unexpected {sorted(unexpected)}, mis-shaped {misshaped}")
    return converted


def load_torch_state_dict(model, state_dict, name_map=None):
    """Copy a PyTorch state dict into `model` in place; returns the model.

    Everything is converted and checked before anything is written, so a state
    dict that does not match never leaves a half-loaded model.

    Args:
        model: a bigdl_py Module with the same layers (names after `name_map`).
        state_dict: {name: torch tensor or ndarray}, e.g. from `read_torch_weights`.
        name_map: None, a {torch name: our name} dict, or a function of the torch name.
    Raises:
        ValueError listing every missing, unexpected and mis-shaped tensor.
    Example:
        >>> load_torch_state_dict(zoo.efficientnet_lite0(), read_torch_weights("lite0.pth"))
    """
    model.load_state_dict(convert_torch_state_dict(model, state_dict, name_map))
    return model
