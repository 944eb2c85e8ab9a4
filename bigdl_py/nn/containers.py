"""Sequential: a chain of modules, the simplest container."""
from bigdl_py.nn.module import Module, from_config, register


@register
class Sequential(Module):
    """Run modules one after the other; backward runs them in reverse.

    Children are named by their `name` if they have one, else by their position
    ("0", "1", ...), so parameter names read like PyTorch's (`"0.weight"`).

    Args:
        *modules: the modules in order, or one list of them.
        name: optional name of the container.

    Example:
        >>> net = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
    """

    def __init__(self, *modules, name=None):
        super().__init__(name=name)
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = modules[0]
        self._inputs = None  # the input of every child from the last forward
        for module in modules:
            self.add(module)

    def add(self, module):
        """Append a module (named by its name or its position); returns self."""
        if not isinstance(module, Module):
            raise ValueError(f"{self.path}: expected a Module, received {type(module).__name__}")
        if any(child is module for _, child in self.children()):
            raise ValueError(f"{self.path}: {module!r} is already in this Sequential; "
                             f"a module instance may appear only once (create a new one)")
        key = module.name or str(len(self._children))
        if key in self._children:
            raise ValueError(f"{self.path}: two children named {key!r}; give each module a unique name")
        self.add_module(key, module)
        return self

    def __len__(self):
        return len(self._children)

    def __getitem__(self, index):
        return list(self._children.values())[index]

    def forward(self, x):
        self._inputs = []
        for module in self._children.values():
            self._inputs.append(x)
            x = module.forward(x)
        return x

    def infer(self, x):
        self._inputs = None
        for module in self._children.values():
            x = module.infer(x)
        return x

    def backward(self, x, grad_y):
        if self._inputs is None:
            raise ValueError(f"{self.path}: backward called before forward")
        children = list(self._children.values())
        needed = self._input_grads_needed()
        for i in reversed(range(len(children))):
            if not needed[i] and not children[i].has_trainable_parameters():
                return None  # nothing below this child trains, and nobody reads the input gradient
            grad_y = self._backward_child(children[i], self._inputs[i], grad_y, needed[i])
        return grad_y

    def _input_grads_needed(self):
        """Per child: whether its input gradient is used (a trainable layer below it, or our caller)."""
        needed, below = [], self.input_grad_needed
        for child in self._children.values():
            needed.append(below)
            below = below or child.has_trainable_parameters()
        return needed

    def set_input_grad_needed(self, needed):
        super().set_input_grad_needed(needed)
        for child, child_needed in zip(self._children.values(), self._input_grads_needed()):
            child.set_input_grad_needed(child_needed)
        return self

    def get_config(self):
        return self._config_entry({"name": self.name, "layers": [m.get_config() for m in self._children.values()]})

    @classmethod
    def from_config(cls, config):
        layers = [from_config(c) for c in config.get("layers", [])]
        return cls(*layers, name=config.get("name"))

    def __repr__(self):
        inner = "\n".join(f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._children.items())
        return f"{type(self).__name__}(\n{inner}\n)" if inner else f"{type(self).__name__}()"
