"""Layer classes by name, and the import that brings a user-defined class to another process.

Built-in layers register when bigdl_py.nn is imported. A layer class defined
elsewhere (`@register class Scale(Module)` in the user's `mylayers.py`) is
recorded in its config with its defining module, `{"class_name": "Scale",
"module": "mylayers", ...}`; a process that rebuilds the model without having
imported that module (a Spark executor, a new Python session) imports it by name.
Only the module's name travels, never its code: the module must be importable
there (shipped with `sc.addPyFile` or `--py-files`, or installed).
"""
import importlib
import re

_REGISTRY = {}
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def register(cls):
    """Class decorator: make a Module subclass constructible from its config by name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def is_builtin(cls):
    return cls.__module__ == "bigdl_py" or cls.__module__.startswith("bigdl_py.")


def class_ref(cls):
    """{"class_name"} of a built-in class; a user-defined one also names its defining "module"."""
    if is_builtin(cls):
        return {"class_name": cls.__name__}
    return {"class_name": cls.__name__, "module": cls.__module__}


def registered(name, module=None):
    """The class registered as `name`, importing `module` first when it is not registered yet."""
    if name not in _REGISTRY and module is not None:
        _import_defining_module(name, module)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown layer class {name!r}; known classes: {known}")
    return _REGISTRY[name]


def check_importable_by_name(model):
    """ValueError, before anything is shipped, when a layer class of `model` lives in __main__.

    Another process (a Spark executor) rebuilds the model by importing each class's module,
    and a script's or notebook's __main__ is not importable there.
    """
    for _, module in model.named_modules():
        if type(module).__module__ == "__main__":
            raise ValueError(_defined_in_main(type(module).__name__))


def _defined_in_main(name):
    return (f"layer class {name!r} was defined in __main__ (a script or notebook), which cannot be imported in "
            f"another process (e.g. a Spark executor); move the class into a module file, import it from there, "
            f"and ship that file with sc.addPyFile(path) or spark-submit --py-files")


def _import_defining_module(name, module):
    if not isinstance(module, str) or not _MODULE_NAME.fullmatch(module):
        raise ValueError(f"layer class {name!r}: expected a dotted module name in its config, received {module!r}")
    if module == "__main__":
        raise ValueError(_defined_in_main(name))
    top = module.split(".")[0]
    try:
        importlib.invalidate_caches()  # a file shipped after this process started is on sys.path now
        importlib.import_module(module)
    except ImportError as e:
        raise ValueError(
            f"layer class {name!r} is defined in module {module!r}, which cannot be imported in this process "
            f"({type(e).__name__}: {e}); ship it with sc.addPyFile('{top}.py') (a .zip for a package) or "
            f"spark-submit --py-files, or install it where the model is loaded") from None
    if name not in _REGISTRY:
        raise ValueError(f"module {module!r} was imported but registers no layer class {name!r}; "
                         f"decorate the class with @register")
