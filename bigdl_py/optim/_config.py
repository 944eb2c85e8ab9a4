"""Config round trips and name lookup shared by optimizers, schedules, triggers, metrics.

Every object stores its constructor arguments (JSON values only) in `self.config`;
`get_config()` returns `{"class_name", "config"}` as `bigdl_py.nn` modules do, and
`Family.from_config(d)` rebuilds the right subclass from that dictionary.
"""


def _key(name):
    return name.lower().replace("_", "").replace("-", "")


class Registry:
    """Classes of one family by lower-case name, plus aliases with preset arguments."""

    def __init__(self, kind):
        self.kind = kind
        self._classes = {}
        self._aliases = {}

    def register(self, cls):
        self._classes[_key(cls.__name__)] = cls
        return cls

    def alias(self, name, cls, **preset):
        self._aliases[_key(name)] = (cls, preset)

    def get(self, identifier, **kwargs):
        """A name ("adam"), a get_config() dictionary, or an instance (returned as is)."""
        if isinstance(identifier, dict):
            if kwargs:
                raise ValueError(f"{self.kind}: keyword arguments {sorted(kwargs)} cannot be combined with a config")
            return self.from_config(identifier)
        if isinstance(identifier, str):
            key = _key(identifier)
            if key in self._aliases:
                cls, preset = self._aliases[key]
                return cls(**preset, **kwargs)
            return self.lookup(identifier)(**kwargs)
        if isinstance(identifier, Configurable) and identifier._registry is self:
            if kwargs:
                raise ValueError(f"{self.kind}: keyword arguments {sorted(kwargs)} given with an instance")
            return identifier
        raise ValueError(f"{self.kind}: expected a name, a config dict or an instance, received {identifier!r}")

    def lookup(self, name):
        key = _key(name)
        if key not in self._classes:
            known = ", ".join(sorted(self._classes) + sorted(self._aliases))
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._classes[key]

    def from_config(self, config):
        if not isinstance(config, dict) or "class_name" not in config:
            raise ValueError(f"expected a {self.kind} config with 'class_name', received {config!r:.200}")
        return self.lookup(config["class_name"])._from_inner(dict(config.get("config", {})))


class Configurable:
    """Base of every configurable optim object: `config` dict, round trip, repr."""

    _registry = None  # set on each family's base class

    def get_config(self):
        return {"class_name": type(self).__name__, "config": dict(self.config)}

    @classmethod
    def from_config(cls, config):
        """Rebuild an object from its get_config() dictionary (any class of the family)."""
        return cls._registry.from_config(config)

    @classmethod
    def _from_inner(cls, inner):
        # Classes holding nested objects (schedules, triggers) override this.
        return cls(**inner)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"
