"""Distributed image feature extraction with a pretrained CNN imported into our own layers.

    from bigdl_py.pipelines.image_features import extract_features
    summary = extract_features(spark, "images/", "out/", model="efficientnet-lite0")
"""
from bigdl_py.pipelines.image_features.extract import extract_features
from bigdl_py.pipelines.image_features.extractor import load_extractor, write_preprocessing
from bigdl_py.pipelines.image_features.pretrained import imagenet_labels, pretrained_efficientnet_lite0
from bigdl_py.pipelines.image_features.sample_images import write_sample_images

__all__ = ["extract_features", "imagenet_labels", "load_extractor", "pretrained_efficientnet_lite0",
           "write_preprocessing", "write_sample_images"]
