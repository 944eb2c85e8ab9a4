"""DistriOptimizer's old backend keywords (compress, ring_timeout, ring_idle_timeout, max_restarts).

They are kept for one release: each one given warns (DeprecationWarning, naming the new
spelling) and is folded into the sync config (engine/sync_config.py). As before, the ring's
keywords do nothing with the block-manager backend, and compress is refused with the ring.
"""
import dataclasses
import warnings

from bigdl_py.engine.sync_config import Auto, BlockManager, Ring

_OLD_NAMES = {"compress": "compress", "timeout": "ring_timeout", "idle_timeout": "ring_idle_timeout",
              "max_restarts": "max_restarts"}


def with_deprecated_options(config, **given):
    """`config` with the old keywords that were given (not None) applied, after a DeprecationWarning."""
    given = {option: value for option, value in given.items() if value is not None}
    if not given:
        return config
    ring = {k: v for k, v in given.items() if k != "compress"}
    block = {k: v for k, v in given.items() if k == "compress"}
    if block and isinstance(config, Ring):
        raise ValueError(f"compress={block['compress']!r} is only supported with sync='blockmanager' "
                         "(write sync=BlockManager(compress=...))")
    if isinstance(config, Ring):
        config = dataclasses.replace(config, **ring)
    elif isinstance(config, Auto):
        config = Auto(ring=dataclasses.replace(config.ring, **ring),
                      blockmanager=dataclasses.replace(config.blockmanager, **block))
    else:
        config = dataclasses.replace(config, **block)
    old = ", ".join(f"{_OLD_NAMES[k]}={v!r}" for k, v in given.items())
    new = repr(config)
    if isinstance(config, BlockManager) and ring:
        new += f" (Ring({_spelled(ring)}) with the ring backend; these do nothing with the block manager)"
    warnings.warn(f"DistriOptimizer({old}) is deprecated; write sync={new}", DeprecationWarning, stacklevel=3)
    return config


def _spelled(options):
    return ", ".join(f"{k}={v!r}" for k, v in options.items())
