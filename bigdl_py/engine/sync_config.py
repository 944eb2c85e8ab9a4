"""The `sync=` of DistriOptimizer: which all-reduce backend trains, with that backend's own options.

    sync=Ring(timeout=60, max_restarts=3)     one barrier stage, TCP all-reduce between the tasks
    sync=BlockManager(compress="bf16")        one Spark job per iteration, slices as Spark blocks
    sync=Auto()                               picked at optimize() from the model size and compute

The plain names "ring", "blockmanager" and "auto" mean the config with default options.
Each config checks its options when it is made (a bad one raises ValueError naming the
option, what was expected and what was received) and has a JSON form, {name: {option:
value}} (e.g. {"ring": {"timeout": 60.0}}), which `sync_config` reads back; Spark ML saves
its `sync` param in that form.
"""
import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar, Optional


def _refused(config, option, expected, value):
    return ValueError(f"{config}: {option}: expected {expected}, received {value!r}")


def _positive_seconds(config, option, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise _refused(config, option, "a finite number of seconds > 0", value)
    return float(value)


def _count(config, option, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise _refused(config, option, "an integer >= 0", value)
    return int(value)


class _SyncConfig:
    """What every backend config has: its name and its JSON form."""

    name: ClassVar[str]

    def to_json(self):
        """{name: {option: value}}: plain JSON that `sync_config` turns back into an equal config."""
        return {self.name: {f.name: _option_json(getattr(self, f.name)) for f in dataclasses.fields(self)}}


def _option_json(value):
    return value.to_json()[value.name] if isinstance(value, _SyncConfig) else value


@dataclass(frozen=True)
class Ring(_SyncConfig):
    """The ring backend: R long-lived barrier tasks, TCP all-reduce, restarts from recovery checkpoints.

    Args:
        timeout: seconds a ring task may wait for a peer or the driver during an iteration
            before the attempt is declared failed (also how long the driver waits for task
            slots after a failure).
        idle_timeout: seconds a ring task waits for the driver's next command (the driver
            may be validating or paused between iterations).
        max_restarts: failures (lost task, executor or stage) recovered from the last
            checkpoint before a TrainingError.
    """

    name: ClassVar[str] = "ring"
    timeout: float = 120.0
    idle_timeout: float = 900.0
    max_restarts: int = 6

    def __post_init__(self):
        object.__setattr__(self, "timeout", _positive_seconds("Ring", "timeout", self.timeout))
        object.__setattr__(self, "idle_timeout", _positive_seconds("Ring", "idle_timeout", self.idle_timeout))
        object.__setattr__(self, "max_restarts", _count("Ring", "max_restarts", self.max_restarts))


@dataclass(frozen=True)
class BlockManager(_SyncConfig):
    """The block-manager backend: one Spark job per iteration, gradient slices moved as Spark blocks.

    Args:
        compress: None (float32 gradients) or "bf16" (gradient pieces sent as bfloat16,
            rounded to nearest: half the bytes, no longer exact).
    """

    name: ClassVar[str] = "blockmanager"
    compress: Optional[str] = None

    def __post_init__(self):
        if self.compress not in (None, "bf16"):
            raise _refused("BlockManager", "compress", "None or 'bf16'", self.compress)


@dataclass(frozen=True)
class Auto(_SyncConfig):
    """Either backend, picked at optimize() (sync/choice.py); the one picked runs with its options here.

    Args:
        ring: the Ring options used if the ring is picked.
        blockmanager: the BlockManager options used if the block manager is picked.
    """

    name: ClassVar[str] = "auto"
    ring: Ring = field(default_factory=Ring)
    blockmanager: BlockManager = field(default_factory=BlockManager)

    def __post_init__(self):
        for option, kind in (("ring", Ring), ("blockmanager", BlockManager)):
            value = getattr(self, option)
            if isinstance(value, dict):
                value = _from_options(kind, value, f"Auto: {option}")
            if not isinstance(value, kind):
                raise _refused("Auto", option, f"a {kind.__name__}(...) or its options as a dict", value)
            object.__setattr__(self, option, value)

    def pick(self, name):
        """The options of the backend named `name` ("ring" or "blockmanager")."""
        return getattr(self, name)


CONFIGS = {config.name: config for config in (BlockManager, Ring, Auto)}
_EXPECTED = (f"one of {tuple(CONFIGS)}, Ring(...), BlockManager(...), Auto(...) "
             "or the JSON form {name: {option: value}}")


def sync_config(value):
    """The config object `value` stands for: a config itself, a backend name, or the JSON form."""
    if isinstance(value, _SyncConfig):
        return value
    if isinstance(value, str) and value in CONFIGS:
        return CONFIGS[value]()
    if isinstance(value, dict) and len(value) == 1:
        (name, options), = value.items()
        if name in CONFIGS and isinstance(options, dict):
            return _from_options(CONFIGS[name], options, f"sync {name!r}")
    raise ValueError(f"sync: expected {_EXPECTED}, received {value!r}")


def _from_options(kind, options, where):
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; expected some of {sorted(known)}")
    return kind(**options)
