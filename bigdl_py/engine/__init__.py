"""Training engines: LocalOptimizer (one process) and DistriOptimizer (Spark), with its sync configs."""
from bigdl_py.engine.distri import DistriOptimizer
from bigdl_py.engine.local import LocalOptimizer
from bigdl_py.engine.sync_config import Auto, BlockManager, Ring

__all__ = ["Auto", "BlockManager", "DistriOptimizer", "LocalOptimizer", "Ring"]
