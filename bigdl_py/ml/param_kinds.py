"""What a Spark ML param accepts: a `Kind` is the text of what is expected plus the converter.

A converter takes the value given by the user and returns the value stored (JSON only, so it
persists in Spark ML's metadata), or raises ValueError / TypeError; declared_params turns that
into one ParamValueError naming the param, `expected` and the value received (plus the
converter's message, when it has one, as the reason).
"""
import json
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from bigdl_py.engine.sync_config import CONFIGS, sync_config
from bigdl_py.optim.metrics import metrics_get
from bigdl_py.optim.optimizers import optimizers_get
from bigdl_py.optim.schedules import schedules_get


@dataclass(frozen=True)
class Kind:
    expected: str
    convert: Callable[[Any], Any]

    def or_none(self, meaning):
        """The same kind that also takes None, which means `meaning` (e.g. "none kept")."""
        def convert(value):
            return None if value is None else self.convert(value)
        return Kind(f"{self.expected}, or None ({meaning})", convert)


def _refuse():
    raise ValueError()


def integer(minimum):
    """An integer >= minimum; whole floats such as 5.0 are taken as 5, bools are refused."""
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError()
        if not isinstance(value, numbers.Integral) and not (math.isfinite(value) and float(value).is_integer()):
            _refuse()
        if int(value) < minimum:
            _refuse()
        return int(value)
    return Kind(f"an integer >= {minimum}", convert)


def number(minimum, below=None):
    """A finite float >= minimum (and < below when given)."""
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError()
        v = float(value)
        if not math.isfinite(v) or v < minimum or (below is not None and v >= below):
            _refuse()
        return v
    expected = f"a number in [{minimum}, {below})" if below is not None else f"a finite number >= {minimum}"
    return Kind(expected, convert)


def one_of(*choices, expected=None):
    """One of `choices`, compared by type and value (so 1 is not True)."""
    def convert(value):
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        _refuse()
    return Kind(expected or f"one of {choices}", convert)


def _string(value):
    if not isinstance(value, str):
        raise TypeError()
    return str(value)


STRING = Kind("a string", _string)
COLUMN = Kind("a column name (a string)", _string)


def _columns(value):
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    _refuse()


COLUMNS = Kind("a column name or a non-empty list of column names", _columns)


def _shape(value):
    dims = [value] if isinstance(value, numbers.Integral) else value
    if not isinstance(dims, (list, tuple)) or not dims:
        _refuse()
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims):
        _refuse()
    return [int(d) for d in dims]


SHAPE = Kind("positive integers such as [28, 28, 1]", _shape)


def _metric_names(value):
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError()
    for name in value:
        metrics_get(name)  # an unknown name raises, listing the known ones
    return [str(v) for v in value]


METRIC_NAMES = Kind("a list of validation metric names such as ['top1', 'loss']", _metric_names)


def registry_entry(family, resolve):
    """A registry name ("adam"), a config dict, or an object with get_config() (stored as its config).

    The value is resolved once here, so an unknown name or a bad config fails when it is set.
    """
    def convert(value):
        if hasattr(value, "get_config"):
            value = value.get_config()
        if not isinstance(value, (str, dict)):
            raise TypeError()
        json.dumps(value)  # must persist as JSON
        resolve(value)
        return value
    return Kind(f"{family} name, a config dict or an object with get_config()", convert)


OPTIMIZER = registry_entry("an optimizer", optimizers_get)
SCHEDULE = registry_entry("a learning-rate schedule", schedules_get)


def _sync(value):
    """A backend name stays a string; a config object or its JSON form is stored as JSON ({"ring": {...}})."""
    if isinstance(value, str):
        if value not in CONFIGS:
            _refuse()
        return value
    if not hasattr(value, "to_json") and not isinstance(value, dict):
        raise TypeError()
    return sync_config(value).to_json()  # a bad option raises, naming it


SYNC = Kind(f"one of {tuple(CONFIGS)}, a Ring(...), BlockManager(...) or Auto(...) config (bigdl_py.engine), "
            "or its JSON form such as {'ring': {'timeout': 60}}", _sync)
