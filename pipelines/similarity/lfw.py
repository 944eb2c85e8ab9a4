"""Face / non-face catalogue (scikit-image's lfw_subset) embedded by EfficientNet-Lite0.

The 200 images (100 faces, then 100 non-faces, 25x25 grey) are written as PNG
files and go through the image-feature pipeline (pretrained EfficientNet-Lite0 on
the executors); the label is 1 for a face.
"""
import os

import numpy as np

from bigdl_py.atomic import atomic_write_bytes


def lfw_images():
    """(images (200, 25, 25) uint8, labels: 1 face, 0 non-face)."""
    from skimage.data import lfw_subset

    images = (np.clip(lfw_subset(), 0, 1) * 255).round().astype(np.uint8)
    return images, (np.arange(len(images)) < 100).astype(np.int64)


def write_lfw_pngs(folder):
    """Write the images as face_NNN.png / nonface_NNN.png; returns their paths in order."""
    import io

    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    images, labels = lfw_images()
    paths = []
    for i, (img, label) in enumerate(zip(images, labels)):
        path = os.path.join(folder, f"{'face' if label else 'nonface'}_{i:03d}.png")
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def lfw_catalogue(spark, output_dir, model="efficientnet-lite0"):
    """Embed the face/non-face images with the image-feature pipeline; Parquet (path, label, features).

    Returns:
        dict(embeddings=parquet path, images=folder, extract=the extraction summary).
    """
    from pyspark.sql import functions as F

    from bigdl_py.pipelines.image_features import extract_features

    folder = os.path.join(output_dir, "lfw_images")
    write_lfw_pngs(folder)
    summary = extract_features(spark, folder, os.path.join(output_dir, "lfw_features"), model=model, top_k=0,
                               progress=False)
    feats = spark.read.parquet(os.path.join(output_dir, "lfw_features", "features"))
    name = F.element_at(F.split("path", "/"), -1)
    path = os.path.join(output_dir, "lfw_embeddings.parquet")
    feats.select("path", name.startswith("face_").cast("long").alias("label"), "features").write.mode(
        "overwrite").parquet(path)
    return dict(embeddings=path, images=folder, extract=summary)
