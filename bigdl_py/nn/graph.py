"""Graph models: a DAG of modules built by calling modules on nodes (Keras-style).

    x = Input(shape=(32, 32, 3))
    y = ReLU()(Add()([x, Conv2d(3, 3, 3, padding=1)(x)]))
    model = Model(x, y)

A `Model` is a Module whose children are the graph's modules; forward runs them in
topological order, backward in reverse, summing the gradients of a node that feeds
several consumers.
"""
from collections import Counter

import numpy as np

from bigdl_py.kernels import activation as kact
from bigdl_py.nn.layers._util import cached, float_dtype, fused_activation
from bigdl_py.nn.module import Module, from_config, register


class Node:
    """One value in a graph: an Input, or the output of a module applied to nodes.

    Made by `Input(...)` or by calling a module on nodes; not built by hand.
    """

    is_graph_node = True  # Module.__call__ returns a Node when called on these

    def __init__(self, module, inputs, shape=None, name=None):
        self.module = module  # None for an Input
        self.multi = isinstance(inputs, (list, tuple))  # the module takes a list
        self.inputs = list(inputs) if self.multi else [inputs]
        self.shape = shape  # per-sample shape of an Input (None = any size)
        self.name = name

    @property
    def is_input(self):
        return self.module is None

    def __repr__(self):
        what = "Input" if self.is_input else type(self.module).__name__
        return f"Node({what}, name={self.name or (self.module and self.module.name)!r})"


def Input(shape, name=None):
    """A graph input holding samples of per-sample `shape` (batch axis excluded).

    Args:
        shape: tuple of ints; None for a size that may vary (e.g. sequence length).
        name: optional name, used in configs and error messages.
    Returns:
        a Node to call modules on.
    """
    shape = (shape,) if isinstance(shape, (int, np.integer)) else shape
    if not isinstance(shape, (list, tuple)) or not all(s is None or (isinstance(s, (int, np.integer)) and s > 0)
                                                       for s in shape):
        raise ValueError(f"Input: expected shape to be a tuple of positive ints or None, received {shape!r}")
    return Node(None, [], shape=tuple(None if s is None else int(s) for s in shape), name=name)


def _as_node_list(what, nodes):
    nodes = list(nodes) if isinstance(nodes, (list, tuple)) else [nodes]
    if not nodes or not all(isinstance(n, Node) for n in nodes):
        raise ValueError(f"Model: expected {what} to be a Node or a non-empty list of Nodes, received {nodes!r:.200}")
    return nodes


def _topological_order(outputs):
    """Nodes reachable from the outputs, every node after its inputs (deterministic)."""
    order, done = [], set()
    for out in outputs:
        stack = [(out, 0)]  # depth-first, iterative so deep graphs do not hit the recursion limit
        while stack:
            node, i = stack.pop()
            if id(node) in done:
                continue
            if i < len(node.inputs):
                stack.append((node, i + 1))
                stack.append((node.inputs[i], 0))  # a node is made after its inputs, so no cycles
            else:
                done.add(id(node))
                order.append(node)
    return order


@register
class Model(Module):
    """A Module made from a graph of nodes between `inputs` and `outputs`.

    Args:
        inputs: an Input node or a list of them.
        outputs: a node or a list of nodes.
        name: optional name of the model.
    Shape:
        one input: forward(array); several: forward([arrays]) in the order of
        `inputs`. One output returns an array, several return a list.
    Children are the graph's modules named by their `name`, else `ClassName_k`
    (k counting that class in topological order). A module may appear only once.
    """

    def __init__(self, inputs, outputs, name=None):
        super().__init__(name=name)
        self._input_nodes = _as_node_list("inputs", inputs)
        self._output_nodes = _as_node_list("outputs", outputs)
        self._single_input = not isinstance(inputs, (list, tuple))
        self._single_output = not isinstance(outputs, (list, tuple))
        self._values = None  # id(node) -> value from the last forward
        for i, node in enumerate(self._input_nodes):
            if not node.is_input:
                raise ValueError(f"Model: inputs[{i}] is {node!r}, not an Input node")
        if len({id(n) for n in self._input_nodes}) != len(self._input_nodes):
            raise ValueError("Model: the same Input node is listed twice in inputs")
        self._input_names = [n.name or f"input_{i}" for i, n in enumerate(self._input_nodes)]
        if len(set(self._input_names)) != len(self._input_names):
            raise ValueError(f"Model: input names must be unique, received {self._input_names}")
        self._order = _topological_order(self._output_nodes)
        known = {id(n) for n in self._input_nodes}
        for node in self._order:
            if node.is_input and id(node) not in known:
                raise ValueError(f"Model: an output depends on {node!r}, which is not in inputs")
        self._node_names = {id(n): k for n, k in zip(self._input_nodes, self._input_names)}
        self._name_children()

    def _name_children(self):
        seen, counts = {}, {}
        for node in self._order:
            if node.is_input:
                continue
            module = node.module
            if id(module) in seen:
                raise ValueError(f"Model: {module!r} (child {seen[id(module)]!r}) is used by two nodes; a module "
                                 f"may appear only once in a graph (create a new instance for each use)")
            if module.name is not None:
                key = module.name
            else:
                cls = type(module).__name__
                key = None
                while key is None or key in self._children or key in self._input_names:
                    key = f"{cls}_{counts.get(cls, 0)}"
                    counts[cls] = counts.get(cls, 0) + 1
            if key in self._children or key in self._input_names:
                raise ValueError(f"Model: two graph elements named {key!r}; names must be unique in a graph")
            seen[id(module)] = key
            self._node_names[id(node)] = key
            self.add_module(key, module)

    # ---- nodes -------------------------------------------------------------------
    def node(self, name):
        """The graph node named `name`: an input's name or a layer's (a child's) name.

        Layers called on it build a new graph on top of this one; a Model made from
        this model's input node and the new output shares this model's layers (and
        their weights and frozen state) up to that node. That is how the head of an
        imported network is replaced.

        Example:
            >>> backbone = load_onnx("efficientnet.onnx").freeze()
            >>> features = backbone.node("GlobalAveragePool")             # (N, 1280)
            >>> model = Model(backbone.node("image"), Linear(1280, 5, name="head")(features))
        """
        nodes = {self._node_names[id(n)]: n for n in self._input_nodes + self._order}
        if not isinstance(name, str) or name not in nodes:
            known = list(nodes) if len(nodes) <= 40 else list(nodes)[:20] + ["..."] + list(nodes)[-20:]
            raise ValueError(f"model '{self.path}'.node: expected the name of an input or a layer, received "
                             f"{name!r}; known: {known}")
        return nodes[name]

    # ---- computation -------------------------------------------------------------
    def _check_inputs(self, x):
        xs = [x] if self._single_input else x
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self._input_nodes):
            raise ValueError(f"model '{self.path}': expected a list of {len(self._input_nodes)} arrays "
                             f"(inputs {self._input_names}), received {type(x).__name__}")
        for node, name, value in zip(self._input_nodes, self._input_names, xs):
            self.check_input(value, (None,) + node.shape, what=f"input '{name}'")
        return list(xs)

    def forward(self, x):
        xs = self._check_inputs(x)
        values = {id(n): v for n, v in zip(self._input_nodes, xs)}
        for node in self._order:
            if not node.is_input:
                args = [values[id(i)] for i in node.inputs]
                values[id(node)] = node.module.forward(args if node.multi else args[0])
        self._values = values
        outs = [values[id(n)] for n in self._output_nodes]
        return outs[0] if self._single_output else outs

    def infer(self, x):
        """As forward, but a node's value is dropped once its last consumer has run."""
        xs = self._check_inputs(x)
        self._values = None
        values = {id(n): v for n, v in zip(self._input_nodes, xs)}
        # id(node) -> consumers still to run; a model output counts as one that never runs.
        pending = Counter(id(i) for node in self._order if not node.is_input for i in node.inputs)
        pending.update(id(n) for n in self._output_nodes)
        for node in self._order:
            if node.is_input:
                continue
            args = [values[id(i)] for i in node.inputs]
            values[id(node)] = node.module.infer(args if node.multi else args[0])
            del args
            for i in node.inputs:
                pending[id(i)] -= 1
                if not pending[id(i)]:
                    del values[id(i)]
        outs = [values[id(n)] for n in self._output_nodes]
        return outs[0] if self._single_output else outs

    def backward(self, x, grad_y):
        if self._values is None:
            raise ValueError(f"model '{self.path}': backward called before forward")
        grads_y = [grad_y] if self._single_output else grad_y
        if not isinstance(grads_y, (list, tuple)) or len(grads_y) != len(self._output_nodes):
            raise ValueError(f"model '{self.path}': expected a list of {len(self._output_nodes)} output gradients, "
                             f"received {type(grad_y).__name__}")
        grads = {}

        def accumulate(node, g):
            # None means no gradient flows (Embedding's integer indices). A sum makes
            # a fresh array: never write into one a layer handed back (it may be the caller's).
            old = grads.get(id(node))
            grads[id(node)] = g if old is None else old if g is None else old + g

        for node, g in zip(self._output_nodes, grads_y):
            accumulate(node, g)
        values = self._values
        wanted = self._gradients_wanted()
        for node in reversed(self._order):
            if node.is_input:
                continue
            args = [values[id(i)] for i in node.inputs]
            g = grads.pop(id(node))
            input_grad_needed = any(wanted[id(i)] for i in node.inputs)
            if g is None or not (input_grad_needed or node.module.has_trainable_parameters()):
                g_in = [None] * len(node.inputs)  # nothing upstream trains: skip the module's backward
            else:
                g_in = self._backward_child(node.module, args if node.multi else args[0], g, input_grad_needed)
                g_in = g_in if node.multi else [g_in]
            if len(g_in) != len(node.inputs):
                raise ValueError(f"layer '{node.module.path}': backward returned {len(g_in)} gradients "
                                 f"for {len(node.inputs)} inputs")
            for i, g in zip(node.inputs, g_in):
                accumulate(i, g)
        if not self.input_grad_needed:
            return None
        # An input that no output depends on gets a zero gradient; integer indices get None.
        out = [grads[id(n)] if id(n) in grads else np.zeros_like(values[id(n)]) for n in self._input_nodes]
        return out[0] if self._single_input else out

    def _gradients_wanted(self):
        """id(node) -> whether the gradient w.r.t. its value is used: a trainable module at or
        before it, or a model input whose gradient our caller reads."""
        wanted = {}
        for node in self._order:
            if node.is_input:
                wanted[id(node)] = self.input_grad_needed
            else:
                wanted[id(node)] = (any(wanted[id(i)] for i in node.inputs)
                                    or node.module.has_trainable_parameters())
        return wanted

    def set_input_grad_needed(self, needed):
        super().set_input_grad_needed(needed)
        wanted = self._gradients_wanted()
        for node in self._order:
            if not node.is_input:
                node.module.set_input_grad_needed(any(wanted[id(i)] for i in node.inputs))
        return self

    # ---- config ------------------------------------------------------------------
    def get_config(self):
        names = self._node_names
        layers = [{"name": names[id(n)], "layer": n.module.get_config(),
                   "inbound": [names[id(i)] for i in n.inputs], "multi": n.multi}
                  for n in self._order if not n.is_input]
        return self._config_entry({
            "name": self.name,
            "inputs": [{"name": k, "given_name": n.name, "shape": list(n.shape)}
                       for n, k in zip(self._input_nodes, self._input_names)],
            "layers": layers,
            "outputs": [names[id(n)] for n in self._output_nodes],
            "single_input": self._single_input,
            "single_output": self._single_output,
        })

    @classmethod
    def from_config(cls, config):
        try:
            nodes, inputs = {}, []
            for spec in config["inputs"]:
                node = Input(spec["shape"], name=spec.get("given_name"))
                nodes[spec["name"]] = node
                inputs.append(node)
            for spec in config["layers"]:
                missing = [k for k in spec["inbound"] if k not in nodes]
                if missing:
                    raise ValueError(f"layer {spec['name']!r} reads {missing}, which are not defined before it")
                args = [nodes[k] for k in spec["inbound"]]
                nodes[spec["name"]] = Node(from_config(spec["layer"]), args if spec["multi"] else args[0])
            outputs = [nodes[k] for k in config["outputs"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"Model.from_config: malformed graph config ({type(e).__name__}: {e})") from None
        return cls(inputs[0] if config.get("single_input", True) and len(inputs) == 1 else inputs,
                   outputs[0] if config.get("single_output", True) and len(outputs) == 1 else outputs,
                   name=config.get("name"))


def _check_array_list(layer, xs):
    """A merge layer's input: a list of at least two numpy arrays (shapes are the layer's check)."""
    if not isinstance(xs, (list, tuple)) or len(xs) < 2:
        raise ValueError(f"layer '{layer.path}' ({type(layer).__name__}): expected a list of at least 2 arrays, "
                         f"received {type(xs).__name__}")
    for i, a in enumerate(xs):
        if not isinstance(a, np.ndarray):
            raise ValueError(f"layer '{layer.path}' ({type(layer).__name__}): input {i} is "
                             f"{type(a).__name__}, expected a numpy array")


@register
class Add(Module):
    """Element-wise sum of several inputs of one shape (residual connections).

    Args:
        activation: None or "relu": max(sum, 0) in the same pass (a ResNet block's end).
    Shape: forward([x1, x2, ...]) -> y, all the same shape.
    """

    saved_for_backward = ("_y",)

    def __init__(self, activation=None, name=None):
        super().__init__(name=name)
        self.config = {"activation": fused_activation(activation)}
        self._y = None

    def forward(self, xs):
        _check_array_list(self, xs)
        if any(a.shape != xs[0].shape for a in xs):
            raise ValueError(f"layer '{self.path}' (Add): expected inputs of one shape, "
                             f"received {[a.shape for a in xs]}")
        # numpy's promotion over all inputs, fused or not (the kernel takes one dtype);
        # the fused kernel is float-only, so integer sums are computed in float32.
        dtype = np.result_type(*xs)
        fused = self.config["activation"] is not None
        if fused:
            dtype = float_dtype(np.empty(0, dtype))
        summed = xs[:-1] if fused else xs
        y = summed[0].astype(dtype, copy=False) if len(summed) == 1 else np.add(summed[0], summed[1], dtype=dtype)
        for a in summed[2:]:
            y += a
        if fused:
            self._y = y = kact.add_relu(y, xs[-1].astype(dtype, copy=False))
        return y

    def backward(self, xs, grad_y):
        if self.config["activation"] is not None:
            y = cached(self, self._y)
            if grad_y.shape != y.shape:
                raise ValueError(f"layer '{self.path}' (Add): grad_y: expected shape {y.shape}, "
                                 f"received {grad_y.shape}")
            grad_y = kact.relu_backward(y, None, grad_y.astype(y.dtype, copy=False))
        # The same array for every input: layers never write into grad_y.
        return [grad_y] * len(xs)


@register
class Concat(Module):
    """Concatenate inputs along `axis` (default -1: channels in NHWC).

    Args:
        axis: the axis to join along (not the batch axis 0).
    Shape: forward([(N, ..., C1), (N, ..., C2)]) -> (N, ..., C1 + C2).
    """

    def __init__(self, axis=-1, name=None):
        super().__init__(name=name)
        if not isinstance(axis, (int, np.integer)) or axis == 0:
            raise ValueError(f"Concat: expected axis to be a non-zero int (axis 0 is the batch), received {axis!r}")
        self.axis = int(axis)
        self.config = {"axis": self.axis}

    def forward(self, xs):
        _check_array_list(self, xs)
        ndim = xs[0].ndim
        axis = self.axis % ndim if -ndim <= self.axis < ndim else None
        if axis is None or axis == 0 or any(a.ndim != ndim for a in xs) or any(
                a.shape[:axis] + a.shape[axis + 1:] != xs[0].shape[:axis] + xs[0].shape[axis + 1:] for a in xs):
            raise ValueError(f"layer '{self.path}' (Concat): cannot join shapes {[a.shape for a in xs]} "
                             f"along axis {self.axis}")
        return np.concatenate(xs, axis=axis)

    def backward(self, xs, grad_y):
        axis = self.axis % grad_y.ndim
        cuts = np.cumsum([a.shape[axis] for a in xs])[:-1]
        return [np.ascontiguousarray(g) for g in np.split(grad_y, cuts, axis=axis)]
