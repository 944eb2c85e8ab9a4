"""Module: the explicit forward/backward contract every layer and container follows.

No autograd tape (Torch7/BigDL style): `forward(x)` computes and caches what the
backward needs, `backward(x, grad_y)` returns the gradient w.r.t. the input and
*accumulates* parameter gradients into `self.grads`.

All parameters of a model can be packed into one flat float32 vector and all
gradients into another (`parameters_flat()`); layer arrays then become views into
them, so the all-reduce and the optimizer work on contiguous slices.
"""
import numpy as np

from bigdl_py.nn.registry import class_ref, register, registered  # noqa: F401 (layers import register from here)


def _is_graph_node(x):
    return getattr(type(x), "is_graph_node", False)


class Module:
    """Base class of layers, containers and user-defined modules.

    Subclasses put constructor arguments in `self.config` (JSON values only), their
    weights in `self.params` with matching zero arrays in `self.grads`, and
    non-trainable state in `self.buffers`.
    """

    def __init__(self, name=None):
        self.config = {}
        self.params = {}
        self.grads = {}
        self.buffers = {}
        self.training = True
        self.name = name
        self.path = name or type(self).__name__  # set to the dotted path by containers
        self._children = {}
        self._flat = None  # (weights, grads) once parameters_flat() packed them
        self._packed_by = None  # the ancestor whose flat vectors hold our arrays
        self._forward_seed = 0
        self.input_grad_needed = True
        self.frozen = False  # own parameters fixed: no gradient, no optimizer update (see freeze)

    # ---- computation -------------------------------------------------------------
    # Attributes that forward fills for backward (cached outputs, masks, statistics).
    saved_for_backward = ()

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def infer(self, x):
        """Forward for prediction: keeps nothing for a backward pass.

        A forward keeps what every layer's backward needs, i.e. all activations of the
        batch stay alive until the next forward; infer frees each one as soon as the next
        layer has read it, so a prediction holds a couple of activations, not all of
        them. Containers override it; a layer clears its `saved_for_backward`.
        """
        y = self.forward(x)
        for attr in self.saved_for_backward:
            setattr(self, attr, None)
        return y

    def backward(self, x, grad_y):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    def __call__(self, x):
        """On arrays: forward(x). On graph nodes (one, or a list): a new graph Node."""
        if _is_graph_node(x) or (isinstance(x, (list, tuple)) and x and all(_is_graph_node(n) for n in x)):
            # The node's own class makes the new node: graph.py imports this module, not the reverse.
            node_type = type(x) if _is_graph_node(x) else type(x[0])
            return node_type(self, x)
        return self.forward(x)

    # ---- tree --------------------------------------------------------------------
    def add_module(self, name, module):
        if not isinstance(module, Module):
            raise ValueError(f"{self.path}: child {name!r} must be a Module, received {type(module).__name__}")
        if self._flat is not None or self._packed_by is not None:
            raise ValueError(f"{self.path}: cannot add {name!r} after parameters_flat() packed the weights")
        self._children[name] = module
        module._set_path(f"{self.path}.{name}")
        return module

    def _set_path(self, path):
        self.path = path
        for name, child in self._children.items():
            child._set_path(f"{path}.{name}")

    def children(self):
        return list(self._children.items())

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self):
        """(dotted name, weight array) for every parameter, in a fixed order."""
        for prefix, m in self.named_modules():
            for key, value in m.params.items():
                yield (f"{prefix}.{key}" if prefix else key), value

    def named_gradients(self):
        for prefix, m in self.named_modules():
            for key, value in m.grads.items():
                yield (f"{prefix}.{key}" if prefix else key), value

    def named_buffers(self):
        for prefix, m in self.named_modules():
            for key, value in m.buffers.items():
                yield (f"{prefix}.{key}" if prefix else key), value

    def num_parameters(self):
        return sum(v.size for _, v in self.named_parameters())

    # ---- modes and state ---------------------------------------------------------
    def train(self, mode=True):
        for _, m in self.named_modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def set_forward_seed(self, seed):
        """Seed for random layers (dropout) in the next forward passes.

        The engine sets it from (seed, epoch, iteration, partition) so that a rerun of
        the same iteration (task retry, resume) draws the same masks.
        """
        for _, m in self.named_modules():
            m._forward_seed = int(seed)

    def set_input_grad_needed(self, needed):
        """Whether backward must return the gradient w.r.t. the input.

        Training engines switch it off for the whole model (BigDL's
        propagateBack=false): the layers that read the data input then skip an
        input gradient nobody uses (for a first convolution, a whole col2im pass)
        and return None. Containers pass the flag on to those layers, and switch it
        off for every layer below the lowest trainable one (see `freeze`).
        """
        self.input_grad_needed = bool(needed)
        return self

    # ---- freezing ----------------------------------------------------------------
    def freeze(self, *names):
        """Fix parameters: optimizers leave them unchanged and no gradient is computed for them.

        Args:
            *names: sub-modules to freeze, by their dotted name from `named_modules()`
                (a Sequential's "0" or "features.conv1", a graph Model's node name);
                none: this module. A frozen module's whole subtree is frozen.
        Returns self. Saved with the model (get_config / save_model); BatchNorm's running
        statistics still follow the training mode, as in torch with requires_grad=False.

        Example:
            >>> model.freeze("conv1", "conv2")   # or model.freeze() for everything
        """
        for m in self._subtrees(names, "freeze"):
            m.frozen = True
        return self

    def unfreeze(self, *names):
        """Undo freeze on the named sub-modules' subtrees (none: this module's subtree). Returns self."""
        for m in self._subtrees(names, "unfreeze"):
            m.frozen = False
        return self

    def _subtrees(self, names, verb):
        modules = dict(self.named_modules())
        for name in names:
            if not isinstance(name, str) or name not in modules:
                known = [k for k in modules if k]
                raise ValueError(f"{self.path}.{verb}: expected names of sub-modules, received {name!r}; "
                                 f"known: {known[:50]}{' ...' if len(known) > 50 else ''}")
        for name in names or [""]:
            for _, m in modules[name].named_modules():
                yield m

    def has_trainable_parameters(self):
        """Whether some module of this subtree has parameters and is not frozen."""
        return any(m.params and not m.frozen for _, m in self.named_modules())

    def frozen_ranges(self):
        """[[start, stop)] of the frozen parameters in the flat vector, adjacent ones merged."""
        ranges, start = [], 0
        for _, m in self.named_modules():
            for value in m.params.values():
                if m.frozen and ranges and ranges[-1][1] == start:
                    ranges[-1][1] += value.size
                elif m.frozen:
                    ranges.append([start, start + value.size])
                start += value.size
        return ranges

    def _backward_child(self, child, x, grad_y, input_grad_needed):
        """child.backward for containers: frozen parameters end with a zero gradient.

        A frozen Linear or Conv2d between trainable layers computes only its input
        gradient. Other layers' kernels compute the parameter gradient in the same pass
        as the input gradient; it is dropped here, so that gradient norms and clipping
        see only trainable parameters.
        """
        child.set_input_grad_needed(input_grad_needed)
        grad_x = child.backward(x, grad_y)
        for _, m in child.named_modules():
            if m.frozen:
                for g in m.grads.values():
                    g.fill(0.0)
        return grad_x

    def zero_grad(self):
        if self._flat is not None:
            self._flat[1].fill(0.0)
            return
        for _, g in self.named_gradients():
            g.fill(0.0)

    # ---- flat parameter vector ---------------------------------------------------
    def parameters_flat(self):
        """Pack all weights into one float32 vector and all gradients into another.

        Every layer's arrays are rebound as views into the two vectors, so writing
        the vector updates the layers. Returns (weights, grads); calling it again
        returns the same vectors.
        """
        if self._flat is not None:
            return self._flat
        if self._packed_by is not None:
            raise ValueError(f"{self.path}: its weights are packed into {self._packed_by.path}'s flat vector; "
                             f"call parameters_flat() on that model")
        owners = [(m, key) for _, m in self.named_modules() for key in m.params]
        total = sum(m.params[key].size for m, key in owners)
        weights = np.empty(total, dtype=np.float32)
        grads = np.zeros(total, dtype=np.float32)
        start = 0
        for m, key in owners:
            shape, size = m.params[key].shape, m.params[key].size
            weights[start:start + size] = m.params[key].reshape(-1)
            m.params[key] = weights[start:start + size].reshape(shape)
            m.grads[key] = grads[start:start + size].reshape(shape)
            start += size
        for _, m in self.named_modules():
            m._packed_by = None if m is self else self
        self._flat = (weights, grads)
        return self._flat

    def parameter_segments(self):
        """[(name, start, stop)] of each parameter inside the flat vector (layer boundaries)."""
        out, start = [], 0
        for name, value in self.named_parameters():
            out.append((name, start, start + value.size))
            start += value.size
        return out

    # ---- persistence -------------------------------------------------------------
    def state_dict(self):
        """{dotted name: copy} of every parameter and buffer."""
        state = {name: np.array(v, copy=True) for name, v in self.named_parameters()}
        state.update({name: np.array(v, copy=True) for name, v in self.named_buffers()})
        return state

    def load_state_dict(self, state):
        """Copy arrays into this model in place (flat-vector views stay valid).

        Everything is checked before anything is written, so a bad state dict never
        leaves a half-loaded model.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        missing = sorted(set(targets) - set(state))
        unexpected = sorted(set(state) - set(targets))
        misshaped = sorted(
            f"{k}: model {targets[k].shape}, given {np.shape(state[k])}"
            for k in set(targets) & set(state)
            if tuple(targets[k].shape) != tuple(np.shape(state[k]))
        )
        if missing or unexpected or misshaped:
            raise ValueError(
                f"state dict does not match model {self.path}: missing {missing}, "
                f"unexpected {unexpected}, mis-shaped {misshaped}"
            )
        for k, target in targets.items():
            value = np.asarray(state[k])
            if not np.issubdtype(value.dtype, np.number):
                raise ValueError(f"state dict entry {k}: expected a numeric array, received dtype {value.dtype}")
            np.copyto(target, value, casting="unsafe")

    def get_config(self):
        """{"class_name", "config"} (plus "module" for a class defined outside bigdl_py): JSON, no weights, no code."""
        return self._config_entry(dict(self.config, name=self.name))

    def _config_entry(self, inner):
        """{"class_name", "config": inner}, plus "frozen": true for a frozen module."""
        entry = {**class_ref(type(self)), "config": inner}
        if self.frozen:
            entry["frozen"] = True
        return entry

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # ---- errors ------------------------------------------------------------------
    def check_input(self, x, shape, what="input"):
        """Raise a ValueError naming this layer if x's shape does not match.

        `shape` uses None for any size (e.g. (None, 28, 28, 1)).
        """
        if not isinstance(x, np.ndarray):
            raise ValueError(f"layer '{self.path}' ({type(self).__name__}): expected a numpy array as {what}, "
                             f"received {type(x).__name__}")
        ok = x.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("N" if i == 0 and s is None else ("*" if s is None else str(s))
                                   for i, s in enumerate(shape)) + ")"
            raise ValueError(f"layer '{self.path}' ({type(self).__name__}): expected {what} shape {want}, "
                             f"received {x.shape}")
        return x

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def from_config(config):
    """Rebuild any registered module from its get_config() dictionary."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"expected a layer config with 'class_name', received {config!r:.200}")
    cls = registered(config["class_name"], config.get("module"))
    frozen = config.get("frozen", False)
    if not isinstance(frozen, bool):
        raise ValueError(f"layer config of {config['class_name']}: expected 'frozen' to be true or false, "
                         f"received {frozen!r:.100}")
    module = cls.from_config(dict(config.get("config", {})))
    module.frozen = frozen
    return module
