"""`@declare_params`: a class's Spark ML params, accessors and signatures, generated from ParamSpec tables.

For every ParamSpec `fooBar` of a class decorated with `@declare_params(GROUP, ...)`:
  - `cls.fooBar` is the pyspark Param (ParamGridBuilder, `copy(extra)` and persistence use it);
  - `getFooBar()` and the chained `setFooBar(value)` are methods of the class;
  - `fooBar=<default>` is a keyword-only argument of `__init__` and of `setParams`, so
    `inspect.signature` and `help()` show it;
  - the class docstring ends with a "Params" section: each param, its default and its doc.
The class writes `__init__(self, *, <its own arguments>, **params)` and passes `params` to
`self._set`; the generated signature adds the table's params after its own arguments.

Every way of setting a value (constructor, setFooBar, setParams, `set`, `copy(extra)`,
`fit(df, params)`, loading a saved stage) converts it through the spec's Kind, and a bad value
raises ParamValueError: "<name>: expected <what>, received <value>".
"""
import dataclasses
import functools
import inspect
from dataclasses import dataclass
from typing import Any

from pyspark.ml.param import Param, Params

from bigdl_py.ml.param_kinds import Kind


class ParamValueError(ValueError):
    """A Spark ML param of an NN estimator or model was given a value it does not accept."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    doc: str
    kind: Kind
    default: Any


def _checker(spec):
    """The Param's typeConverter: the spec's conversion, any refusal raised as ParamValueError."""
    def check(value):
        try:
            return spec.kind.convert(value)
        except (TypeError, ValueError, KeyError) as e:
            reason = f" ({e})" if str(e) else ""
            raise ParamValueError(f"{spec.name}: expected {spec.kind.expected}, received {value!r}{reason}") from None
    return check


class NNParams(Params):
    """Params whose every value, None included, goes through the param's check (pyspark skips None)."""

    _param_specs = {}  # name -> ParamSpec, set by @declare_params

    def __init__(self):
        super().__init__()
        self._setDefault(**{name: spec.default for name, spec in self._param_specs.items()})

    def _set(self, **kwargs):
        """Set the given params, all or (when one value is refused) none."""
        params = {name: self.getParam(name) for name in kwargs}
        self._paramMap.update({params[name]: params[name].typeConverter(value) for name, value in kwargs.items()})
        return self

    def _setDefault(self, **kwargs):
        for name, value in kwargs.items():
            param = self.getParam(name)
            self._defaultParamMap[param] = param.typeConverter(value)
        return self

    def set(self, param, value):
        """Set `param` (a Param of this instance) to `value` (ParamValueError when refused)."""
        self._shouldOwn(param)
        self._set(**{param.name: value})


def declare_params(*groups, defaults=None):
    """Class decorator: the params of `groups` (tuples of ParamSpec) on the class, as the module docstring says.

    Args:
        groups: tuples of ParamSpec; a name in two groups is an error.
        defaults: {name: value} replacing the table's default for this class (and its subclasses
            unless they are decorated again).
    """
    specs = {}
    for spec in (s for group in groups for s in group):
        if spec.name in specs:
            raise ValueError(f"declare_params: param {spec.name!r} is declared twice")
        specs[spec.name] = spec
    for name, value in (defaults or {}).items():
        if name not in specs:
            raise ValueError(f"declare_params: defaults names {name!r}, expected one of {sorted(specs)}")
        specs[name] = dataclasses.replace(specs[name], default=value)
    for name, spec in specs.items():  # a bad default fails at import; docs show the value as stored
        specs[name] = dataclasses.replace(spec, default=_checker(spec)(spec.default))

    def decorate(cls):
        if not issubclass(cls, NNParams):
            raise TypeError(f"declare_params: {cls.__name__} must derive from NNParams")
        cls._param_specs = specs
        for spec in specs.values():
            setattr(cls, spec.name, Param(Params._dummy(), spec.name, spec.doc, typeConverter=_checker(spec)))
            for accessor in _accessors(cls, spec):
                existing = getattr(cls, accessor.__name__, None)
                if existing is None or getattr(existing, "_from_param_table", False):
                    setattr(cls, accessor.__name__, accessor)
        cls.__init__ = _constructor(cls, specs)
        cls.setParams = _set_params(cls, specs)
        cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n\n" + _params_section(specs)
        return cls
    return decorate


def _accessors(cls, spec):
    """getName and setName for one spec, named and documented for dir() and help()."""
    suffix = spec.name[0].upper() + spec.name[1:]
    name = spec.name

    def getter(self):
        return self.getOrDefault(name)

    def setter(self, value):
        return self._set(**{name: value})

    getter.__doc__ = f"{spec.doc} (default: {spec.default!r})."
    setter.__doc__ = f"Set {name}: {spec.kind.expected}. Returns self."
    for method, verb in ((getter, "get"), (setter, "set")):
        method.__name__ = verb + suffix
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        method._from_param_table = True
    return getter, setter


def _keyword_params(specs):
    return [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=s.default) for s in specs.values()]


def _bound(signature, where, args, kwargs):
    """Check arguments against `signature` (TypeError naming `where`, as Python does for a plain function)."""
    try:
        signature.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{where}: {e}") from None


def _constructor(cls, specs):
    """`__init__` with the hand-written one's own arguments plus every param, keyword-only."""
    written = inspect.unwrap(cls.__init__)
    own = inspect.signature(written).parameters.values()
    if not any(p.kind is p.VAR_KEYWORD for p in own):
        raise TypeError(f"declare_params: {cls.__name__}.__init__ must take **params")
    if any(p.kind not in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in list(own)[1:]):
        raise TypeError(f"declare_params: {cls.__name__}.__init__ must take keyword-only arguments")
    signature = inspect.Signature([p for p in own if p.kind is not p.VAR_KEYWORD] + _keyword_params(specs))

    @functools.wraps(written)
    def __init__(self, *args, **kwargs):
        _bound(signature, f"{cls.__name__}()", (self,) + args, kwargs)
        written(self, **kwargs)

    __init__.__qualname__ = f"{cls.__qualname__}.__init__"
    __init__.__signature__ = signature
    return __init__


def _set_params(cls, specs):
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = inspect.Signature([self_param] + _keyword_params(specs))

    def setParams(self, *args, **kwargs):
        _bound(signature, f"{cls.__name__}.setParams()", (self,) + args, kwargs)
        return self._set(**kwargs)

    setParams.__qualname__ = f"{cls.__qualname__}.setParams"
    setParams.__doc__ = "Set any of the params given (keyword-only; see the class docstring). Returns self."
    setParams.__signature__ = signature
    return setParams


def _params_section(specs):
    lines = ["Params (keyword arguments of the constructor and setParams; getX() and setX(value) for each):"]
    lines += [f"    {s.name}={s.default!r}: {s.doc}; {s.kind.expected}." for s in specs.values()]
    return "\n".join(lines)
