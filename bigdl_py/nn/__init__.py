"""Neural-network modules with explicit forward/backward (no autograd tape)."""
from bigdl_py.nn.module import Module, register, from_config
from bigdl_py.nn import init
from bigdl_py.nn.layers import (ELU, GRU, LRN, LSTM, Activation, AvgPool2d, BatchNorm, Conv2d, Dropout, Embedding,
                                Flatten, GlobalAvgPool2d, Identity, LeakyReLU, Linear, LogSoftMax, MaxPool2d, ReLU,
                                ReLU6, Reshape, Sigmoid, SoftMax, Tanh, ZeroPad2d)
from bigdl_py.nn.layers.select import Narrow
from bigdl_py.nn.containers import Sequential
from bigdl_py.nn.graph import Add, Concat, Input, Model, Node
from bigdl_py.nn.criterions import (BCEWithLogitsLoss, ClassNLLCriterion, Criterion, CrossEntropyLoss, L1Loss,
                                    MSELoss, NLLLoss, SmoothL1Loss, criterion_from_config, get_criterion)
from bigdl_py.nn.fusion import fuse_for_inference
from bigdl_py.nn.io import load_model, save_model
from bigdl_py.nn.onnx_export import save_onnx
from bigdl_py.nn.onnx_import import load_onnx
from bigdl_py.nn import zoo
