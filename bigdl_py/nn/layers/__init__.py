"""Layers: weights and caches live here, the math lives in `bigdl_py.kernels`."""
from bigdl_py.nn.layers.activations import (ELU, Activation, LeakyReLU, LogSoftMax, ReLU, ReLU6, Sigmoid,
                                            SoftMax, Tanh)
from bigdl_py.nn.layers.conv import Conv2d
from bigdl_py.nn.layers.dropout import Dropout
from bigdl_py.nn.layers.embedding import Embedding
from bigdl_py.nn.layers.linear import Linear
from bigdl_py.nn.layers.normalization import LRN, BatchNorm
from bigdl_py.nn.layers.pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from bigdl_py.nn.layers.recurrent import GRU, LSTM
from bigdl_py.nn.layers.select import Narrow
from bigdl_py.nn.layers.shape import Flatten, Identity, Reshape, ZeroPad2d

__all__ = ["Activation", "AvgPool2d", "BatchNorm", "Conv2d", "Dropout", "ELU", "Embedding", "Flatten", "GRU",
           "GlobalAvgPool2d", "Identity", "LRN", "LSTM", "LeakyReLU", "Linear", "LogSoftMax", "MaxPool2d",
           "Narrow", "ReLU", "ReLU6", "Reshape", "Sigmoid", "SoftMax", "Tanh", "ZeroPad2d"]
