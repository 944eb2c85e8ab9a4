"""Which CNN extracts the features: the pretrained EfficientNet-Lite0 or a model directory of ours.

An extractor is a feature network (`body`), an optional classifier head (the
final Linear of a Sequential model), the preprocessing its input needs and the
class names. For EfficientNet-Lite0 the features are the 1280-d globally pooled
activations; for a model we trained (e.g. LeNet-5 on MNIST) they are the
penultimate layer's output.
"""
import json
import os

import numpy as np

from bigdl_py.atomic import atomic_write_json
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.fusion import fuse_for_inference
from bigdl_py.nn.io import load_model
from bigdl_py.nn.layers import Conv2d, Dropout, Linear
from bigdl_py.nn.module import from_config
from bigdl_py.pipelines.image_features.preprocess import Preprocessing
from bigdl_py.pipelines.image_features.pretrained import (LITE_MEAN, LITE_STD, MODEL_NAME, imagenet_labels,
                                                          pretrained_efficientnet_lite0)

PREPROCESSING_FILE = "preprocessing.json"  # optional, beside a saved model's config.json


class Extractor:
    """body: features network; head: Linear classifier or None; labels: class names or None."""

    def __init__(self, name, body, head, preprocessing, labels):
        self.name, self.body, self.head = name, body, head
        self.preprocessing, self.labels = preprocessing, labels
        self.feature_dim = self._probe()

    def _probe(self):
        """Feature size from one zero image; a wrong image size fails here, on the driver, naming the layer."""
        p = self.preprocessing
        x = np.zeros((1, p.image_size, p.image_size, p.channels), np.float32)
        try:
            feats = self.body.infer(x)
        except ValueError as e:
            raise ValueError(f"model {self.name}: cannot run on {p.image_size}x{p.image_size}x{p.channels} "
                             f"images (image_size={p.image_size}): {e}") from None
        if feats.ndim != 2:
            raise ValueError(f"model {self.name}: expected features of shape (N, D), found {feats.shape}; "
                             f"end the feature layers with a global pooling or Flatten")
        return int(feats.shape[1])


def _copy(module):
    """An independent copy (config + weights), so the original model stays intact."""
    clone = from_config(module.get_config())
    clone.load_state_dict(module.state_dict())
    return clone.eval()


def split_classifier(model):
    """(feature network, final Linear or None) of a model.

    For a Sequential ending in a Linear the features are the input of that Linear
    (eval-mode Dropout before it is the identity and is left out); any other
    model is all features.
    """
    children = [m for _, m in model.children()] if isinstance(model, Sequential) else []
    if not children or not isinstance(children[-1], Linear):
        return _copy(model), None
    body = children[:-1]
    while body and isinstance(body[-1], Dropout):
        body.pop()
    return Sequential(*[_copy(m) for m in body], name=model.name).eval(), _copy(children[-1])


def write_preprocessing(model_dir, channels, mean, std, labels=None):
    """Record in a saved model's directory how its input pixels are normalised (and its class names)."""
    Preprocessing(1, channels=channels, mean=mean, std=std)  # validates
    config = {"channels": channels, "mean": np.atleast_1d(mean).tolist(), "std": np.atleast_1d(std).tolist()}
    if labels is not None:
        config["labels"] = [str(s) for s in labels]
    atomic_write_json(os.path.join(model_dir, PREPROCESSING_FILE), config)


def _read_preprocessing(model_dir, model):
    file = os.path.join(model_dir, PREPROCESSING_FILE)
    if not os.path.isfile(file):
        first_conv = next((m for _, m in model.named_modules() if isinstance(m, Conv2d)), None)
        return {"channels": first_conv.config["in_channels"] if first_conv else 3, "mean": 0.0, "std": 255.0}
    try:
        with open(file, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from None
    if not isinstance(config, dict) or not {"channels", "mean", "std"} <= set(config):
        raise ValueError(f"{file}: expected an object with channels, mean and std, found {config!r:.200}")
    return config


def load_extractor(model="efficientnet-lite0", image_size=224, resize="crop"):
    """The Extractor for `model`: "efficientnet-lite0" or a directory written by bigdl_py.nn.save_model.

    A model directory may hold preprocessing.json (see `write_preprocessing`);
    without it pixels are scaled to [0, 1] and the channel count is the first
    convolution's input channels.
    """
    if model == MODEL_NAME:
        net = fuse_for_inference(pretrained_efficientnet_lite0())  # inference only: no BN passes
        prep = Preprocessing(image_size, resize, 3, LITE_MEAN, LITE_STD)
        labels = list(imagenet_labels())
    else:
        if not isinstance(model, str) or not os.path.isdir(model):
            raise ValueError(f"model: expected {MODEL_NAME!r} or a saved model directory, received {model!r}")
        net = fuse_for_inference(load_model(model))
        config = _read_preprocessing(model, net)
        prep = Preprocessing(image_size, resize, config["channels"], config["mean"], config["std"])
        labels = config.get("labels")
    body, head = split_classifier(net)
    if head is not None and labels is None:
        labels = [str(i) for i in range(head.config["out_features"])]
    if head is not None and len(labels) != head.config["out_features"]:
        raise ValueError(f"model {model}: {len(labels)} class names for {head.config['out_features']} classes")
    return Extractor(model if model == MODEL_NAME else os.path.abspath(model), body, head, prep, labels)
