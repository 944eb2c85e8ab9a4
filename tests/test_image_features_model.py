"""EfficientNet-Lite0 with imported ImageNet weights vs the PyTorch reference; preprocessing; extractors."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from bigdl_py import nn
from bigdl_py.nn import zoo
from bigdl_py.nn.io import load_model
from bigdl_py.pipelines.image_features.extractor import load_extractor, split_classifier, write_preprocessing
from bigdl_py.pipelines.image_features.preprocess import BadImage, Preprocessing, decode
from bigdl_py.pipelines.image_features.pretrained import (LITE_MEAN, LITE_STD, imagenet_labels,
                                                          pretrained_efficientnet_lite0, pretrained_model_dir,
                                                          weights_file)
from bigdl_py.pipelines.image_features.sample_images import SKIMAGE_COLOUR, SKIMAGE_GREY, photos

lite = pytest.importorskip("efficientnet_lite_pytorch")


@pytest.fixture(scope="module")
def photo_batch():
    """Every shipped photo, preprocessed once: (names, (N, 224, 224, 3) float32)."""
    prep = Preprocessing(224, "crop", 3, LITE_MEAN, LITE_STD)
    shots = photos()
    return list(shots), np.stack([prep.to_tensor(Image.fromarray(img)) for img in shots.values()])


@pytest.fixture(scope="module")
def reference():
    ref = lite.EfficientNet.from_name("efficientnet-lite0")
    ref.load_state_dict(torch.load(weights_file(), map_location="cpu", weights_only=True))
    return ref.eval()


@pytest.fixture(scope="module")
def both_outputs(photo_batch, reference):
    """(our 1280-d embeddings, our logits, torch's embeddings, torch's logits) on the same tensors."""
    _, x = photo_batch
    extractor = load_extractor("efficientnet-lite0")
    feats = extractor.body.forward(x)
    logits = extractor.head.forward(feats)
    with torch.no_grad():
        xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
        ref_feats = reference.extract_features(xt).mean(dim=(2, 3))
        ref_logits = reference._fc(ref_feats)
    return feats, logits, ref_feats.numpy(), ref_logits.numpy()


def test_the_photo_set_is_every_shipped_photo(photo_batch):
    names, x = photo_batch
    assert set(names) == {"china", "flower", *SKIMAGE_COLOUR, *SKIMAGE_GREY}
    assert x.shape == (len(names), 224, 224, 3)


def test_embeddings_match_torch_with_cosine_at_least_0_9999_per_image(photo_batch, both_outputs):
    feats, _, ref_feats, _ = both_outputs
    assert feats.shape == ref_feats.shape == (len(photo_batch[0]), 1280)
    cosine = (feats * ref_feats).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref_feats, axis=1))
    print("cosine per photo:", dict(zip(photo_batch[0], np.round(cosine, 7))))
    assert cosine.min() >= 0.9999, dict(zip(photo_batch[0], cosine))


def test_top1_class_agrees_with_torch_on_every_photo(photo_batch, both_outputs):
    _, logits, _, ref_logits = both_outputs
    labels = imagenet_labels()
    ours, theirs = logits.argmax(1), ref_logits.argmax(1)
    print("top-1:", {n: labels[i] for n, i in zip(photo_batch[0], ours)})
    assert list(ours) == list(theirs)
    top1 = {n: labels[i] for n, i in zip(photo_batch[0], ours)}
    assert top1["chelsea"] == "Egyptian cat" and top1["coffee"] == "espresso"


def test_imagenet_labels_are_the_1000_classes_in_index_order():
    labels = imagenet_labels()
    assert len(labels) == 1000
    assert (labels[0], labels[285], labels[967], labels[999]) == ("tench", "Egyptian cat", "espresso", "toilet tissue")


def test_pretrained_weights_are_cached_in_our_format_and_load_without_torch():
    path = pretrained_model_dir()
    assert sorted(os.listdir(path)) == ["config.json", "weights.npz"]
    state = torch.load(weights_file(), map_location="cpu", weights_only=True)
    ours = load_model(path).state_dict()
    np.testing.assert_array_equal(ours["_blocks.3._depthwise_conv.weight"],
                                  state["_blocks.3._depthwise_conv.weight"].numpy().transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(ours["_fc.weight"], state["_fc.weight"].numpy())
    code = ("import sys; sys.modules['torch'] = None\n"  # any torch import now fails
            "from bigdl_py.pipelines.image_features.pretrained import pretrained_efficientnet_lite0\n"
            "print(pretrained_efficientnet_lite0().num_parameters())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == str(zoo.efficientnet_lite0().num_parameters())
    assert pretrained_efficientnet_lite0().training is False


def test_crop_keeps_the_aspect_and_takes_the_centre_plain_stretches():
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the centre square of a 2:1 image is white
    crop = Preprocessing(40, "crop", 3, 0.0, 255.0).to_tensor(Image.fromarray(img))
    plain = Preprocessing(40, "plain", 3, 0.0, 255.0).to_tensor(Image.fromarray(img))
    assert crop.shape == plain.shape == (40, 40, 3) and crop.dtype == np.float32
    np.testing.assert_allclose(crop, 1.0, atol=1e-6)
    assert plain[:, 0].max() < 0.01 and plain[:, 20].min() > 0.99


def test_grey_and_rgba_images_convert_and_normalise_per_channel():
    grey = Image.fromarray(np.full((8, 8), 100, np.uint8))
    x = Preprocessing(8, "plain", 3, (127, 100, 50), (128, 2, 50)).to_tensor(grey)
    np.testing.assert_allclose(x[0, 0], [(100 - 127) / 128, 0.0, 1.0], rtol=1e-6)
    rgba = Image.fromarray(np.full((8, 8, 4), 200, np.uint8))
    assert Preprocessing(4, "crop", 1, 0.0, 1.0).to_tensor(rgba).shape == (4, 4, 1)


def test_bad_files_give_the_reason(tmp_path):
    good = tmp_path / "a.jpg"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    content = good.read_bytes()
    assert decode(content).size == (32, 32)
    for data, reason in ((b"", "zero bytes"), (b"\x00" * 100, "not an image"),
                         (content[:len(content) // 2], "truncated or corrupt")):
        with pytest.raises(BadImage, match=reason):
            decode(data)


@pytest.mark.parametrize("kwargs, match", [(dict(image_size=0), "image_size"), (dict(resize="fit"), "resize"),
                                           (dict(channels=2), "channels"), (dict(std=0.0), "std")])
def test_preprocessing_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Preprocessing(**{"image_size": 8, **kwargs})


def test_lenet_features_are_the_penultimate_layer(tmp_path):
    model = zoo.lenet5(seed=0).eval()
    body, head = split_classifier(model)
    x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    penultimate = x
    for _, layer in list(model.children())[:-1]:
        penultimate = layer.forward(penultimate)
    np.testing.assert_array_equal(body.forward(x), penultimate)
    np.testing.assert_array_equal(head.forward(penultimate), model.forward(x))
    assert body.forward(x).shape == (3, 84)
    nn.save_model(model, str(tmp_path / "lenet"))
    write_preprocessing(str(tmp_path / "lenet"), channels=1, mean=33.3, std=78.6, labels=list("abcdefghij"))
    extractor = load_extractor(str(tmp_path / "lenet"), image_size=28)
    assert extractor.feature_dim == 84 and extractor.labels[2] == "c" and extractor.preprocessing.channels == 1
    with pytest.raises(ValueError, match=r"cannot run on 32x32x1 images \(image_size=32\)"):
        load_extractor(str(tmp_path / "lenet"), image_size=32)
    with pytest.raises(ValueError, match="expected 'efficientnet-lite0' or a saved model directory"):
        load_extractor(str(tmp_path / "nowhere"))
