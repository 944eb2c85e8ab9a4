"""Image bytes -> normalised float32 tensors with Pillow (runs on the executors).

Two steps, timed separately by the pipeline: `decode` (bytes -> fully loaded
Pillow image, or the reason it cannot be one) and `to_tensor` (colour
conversion, resize, normalisation -> (H, W, C) float32, channels last).
"""
import io

import numpy as np

RESIZE_MODES = ("crop", "plain")


class BadImage(Exception):
    """A file that is not a decodable image; the message is the reason."""


def decode(content):
    """A fully decoded Pillow image from file bytes.

    Raises:
        BadImage("zero bytes" | "not an image: ..." | "truncated or corrupt ...").
    """
    from PIL import Image, UnidentifiedImageError

    if not content:
        raise BadImage("zero bytes")
    try:
        img = Image.open(io.BytesIO(content))
    except UnidentifiedImageError:
        raise BadImage(f"not an image: no known format in {len(content)} bytes") from None
    except (OSError, ValueError) as e:
        raise BadImage(f"truncated or corrupt image ({type(e).__name__}: {e})") from None
    try:
        img.load()  # Image.open only reads the header; a cut-off file fails here
    except (OSError, ValueError, SyntaxError) as e:
        raise BadImage(f"truncated or corrupt {img.format} ({type(e).__name__}: {e})") from None
    return img


class Preprocessing:
    """How pixels become model input.

    Args:
        image_size: output height and width.
        resize: "crop" (shorter side to image_size keeping the aspect, then the
            centre square) or "plain" (stretch to image_size x image_size).
        channels: 3 (RGB) or 1 (greyscale).
        mean, std: per channel, in 0..255 pixel units: x = (pixel - mean) / std.
    """

    def __init__(self, image_size, resize="crop", channels=3, mean=0.0, std=255.0):
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size: expected a positive integer, received {image_size!r}")
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize: expected one of {RESIZE_MODES}, received {resize!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels: expected 1 or 3, received {channels!r}")
        self.image_size, self.resize, self.channels = int(image_size), resize, channels
        self.mean = np.broadcast_to(np.asarray(mean, np.float32), (channels,)).copy()
        self.std = np.broadcast_to(np.asarray(std, np.float32), (channels,)).copy()
        if not np.all(self.std > 0):
            raise ValueError(f"std: expected values > 0, received {std!r}")

    def to_config(self):
        return dict(image_size=self.image_size, resize=self.resize, channels=self.channels,
                    mean=self.mean.tolist(), std=self.std.tolist())

    def to_tensor(self, img):
        """(image_size, image_size, channels) float32 from a decoded Pillow image."""
        from PIL import Image

        img = img.convert("RGB" if self.channels == 3 else "L")
        size = self.image_size
        if self.resize == "plain":
            img = img.resize((size, size), Image.BILINEAR)
        else:
            w, h = img.size
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=3.0)
            left, top = (nw - size) // 2, (nh - size) // 2
            img = img.crop((left, top, left + size, top + size))
        x = np.asarray(img, dtype=np.float32).reshape(size, size, self.channels)
        return (x - self.mean) / self.std
