"""Neural-network modules with explicit forward/backward (no autograd tape)."""
from bigdl_py.nn.module import Module, register, from_config
