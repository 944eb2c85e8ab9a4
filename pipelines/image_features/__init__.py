"""Distributed image feature extraction with a pretrained CNN imported into our own layers."""
