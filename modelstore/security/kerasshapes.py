"""The input shapes a Keras model config gives its layers, read from the JSON alone (no
Keras): what ``scan`` sizes a layer from when the file names no ``build_config`` for it.

A legacy ``.h5`` (or a ``.keras`` whose ``build_config`` entries were removed) names no
layer's input shape: Keras builds each layer when the model is reconstructed, for the tensor
it is first called on (red team, pass 9: a ``Dense`` fed by a 2**20-wide ``Input`` made a
5 KB file allocate 5 GiB in plain Keras while ``scan`` sized it from its units alone). This
module follows the tensors as Keras does, from the declared inputs (``InputLayer``'s
``batch_shape``, a ``Sequential``'s ``build_input_shape``) through the graph of a Functional
model (each layer's first inbound node, which Keras processes first and builds the layer
with) or the layers of a Sequential one, with each built-in layer's output-shape rule.

Every dimension given is the one Keras computes, or None (unknown: a layer without a rule
here, a dimension Keras leaves unknown, anything malformed); the floors only grow with known
dimensions, so an unknown one can make ``scan`` miss a large layer but never refuse a
benign one. A graph the walk cannot follow as Keras would (:class:`AmbiguousGraph`) is
refused instead. ``load`` builds the model itself and counts exactly.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .kerasrules import kind, output_of, unreadable
from .kerasspatial import Out, Shape, flat, known
from .kerasweights import _POSITIONS, SATURATED, Shapes, _prod

_MODELS = frozenset(("Sequential", "Functional", "Model"))


#: Dimensions a tensor may have (numpy's limit): more is refused (red team: a Dot of a tensor
#: with itself doubles its rank; a shape past it was dropped, not sized). Dimensions past
#: SATURATED count as SATURATED.
MAX_RANK = 64
#: Layer calls the walk makes, per object node of the config, before it refuses: a nested
#: Sequential is followed again for each input shape it is called with (red team: 2,000
#: calls of 2,000 layers took 24 s).
CALLS_PER_NODE = 16
#: The first argument of a layer called with keywords only, by the names Keras' layers use.
_FIRST = ("inputs", "sequences", "query", "data", "x", "images")


class AmbiguousGraph(ValueError):
    """A graph the walk refuses to follow: negative node or tensor indices (Keras indexes
    them Python-style), two layers of one name (Keras keeps the last), tensors of more than
    MAX_RANK dimensions, layers called past the budget. Keras never writes any of them."""


def inferred_inputs(config: Any) -> dict[int, Shapes]:
    """``id`` of a layer node -> the shapes it is first called with, for the layers of the
    config's models (nested ones too) whose input follows from the declared input shapes.
    Raises :class:`AmbiguousGraph`."""
    return follow(config).found


def follow(config: Any) -> _Walk:
    """The walk of ``config``: ``found`` (:func:`inferred_inputs`) and ``widest`` (the most
    elements per sample any followed output has, unknown dimensions counted as 1, and the
    layer's name). Raises :class:`AmbiguousGraph`."""
    walk = _Walk(_objects(config))
    if isinstance(config, dict):
        walk.model(config, None)
    return walk


def _objects(config: Any) -> int:
    """Object nodes (``class_name`` and ``config``) in a config; one with an argument read
    here otherwise than Keras reads it (:func:`.kerasrules.unreadable`) is refused, whether
    the walk reaches it or not (a ``build_config`` builds a layer no node calls)."""
    count, stack = 0, [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            count += "class_name" in node
            cfg = node.get("config") if "class_name" in node else None
            bad = unreadable(cfg) if isinstance(cfg, dict) else None
            if bad:
                name = str(cfg.get("name") if isinstance(cfg, dict) else None)[:80]
                raise AmbiguousGraph(f"{node['class_name']!r:.80} {name!r} has {bad}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


class _Walk:
    def __init__(self, nodes: int) -> None:
        self.found: dict[int, Shapes] = {}
        self.depth = 0
        self.models: dict[tuple[int, str], Out | None] = {}  # a nested model's outputs
        self.budget = CALLS_PER_NODE * nodes + 10_000
        self.widest: tuple[int, str, Shape] = (0, "", [])

    def model(self, node: dict[str, Any], given: Shape | None) -> Out | None:
        """A (nested) model's outputs, its layers' inputs recorded on the way (those of its
        first call: a model called again is followed again only for another input)."""
        cfg = node.get("config")
        if not isinstance(cfg, dict) or self.depth > 64:
            return None
        functional = isinstance(cfg.get("input_layers"), (list, dict))
        key = (id(node), "" if functional else repr(given))
        if key not in self.models:
            self.models[key] = None  # (while it is followed: a model inside itself)
            self.depth += 1
            try:
                if functional:
                    self.models[key] = self.functional(cfg)
                elif isinstance(cfg.get("layers"), list):
                    self.models[key] = self.sequential(cfg["layers"], cfg, given)
            finally:
                self.depth -= 1
        return self.models[key]

    def sequential(self, layers: list[Any], cfg: dict[str, Any], given: Shape | None) -> Out:
        """Keras adds the layers in order: an ``InputLayer`` first builds the model for its
        shape; else ``build_input_shape`` does; else the first call (``given``)."""
        nodes = [n for n in layers if isinstance(n, dict)]
        first = nodes[0] if nodes else {}
        arg = _input_arg(first)
        if kind(first) == "InputLayer":
            shape: Shape | None = _declared(first)
            nodes = nodes[1:]
        elif arg is not None:  # Keras adds an InputLayer(shape=arg) first
            shape = _bounded([None, *arg]) if flat(arg) else None
        elif flat(cfg.get("build_input_shape")):
            shape = _bounded(list(cfg["build_input_shape"]))
        else:
            shape = given
        for layer in nodes:
            out = self.call(layer, [shape], {})
            shape = out[0] if out else None
        return [shape]

    def functional(self, cfg: dict[str, Any]) -> Out | None:
        """Each layer's first node (the one it is built for), followed from its inputs."""
        nodes = [n for n in cfg.get("layers") or [] if isinstance(n, dict)]
        names = [_name(n) for n in nodes]
        counts = Counter(n for n in names if isinstance(n, str))  # (a ref names a str)
        twice = [n for n, c in counts.items() if c > 1]
        if twice:
            raise AmbiguousGraph(f"two layers are named {twice[0][:80]!r}")
        by_name = {n: node for n, node in zip(names, nodes, strict=True) if counts[n] == 1}
        memo: dict[tuple[str, int], Out | None] = {}
        for name in by_name:
            self._resolve((name, 0), by_name, memo)
        outputs = _refs(cfg.get("output_layers"))
        for ref in outputs:  # (a later node of a layer, too)
            self._resolve((ref[0], ref[1]), by_name, memo)
        return [_tensor(r, memo) for r in outputs]

    def _resolve(
        self,
        key: tuple[str, int],
        by_name: dict[str, dict[str, Any]],
        memo: dict[tuple[str, int], Out | None],
    ) -> None:
        stack, opened = [key], set()
        while stack:
            k = stack[-1]
            if k in memo:
                stack.pop()
                continue
            node = by_name.get(k[0])
            inbound = node.get("inbound_nodes") if node else None
            data = inbound[k[1]] if isinstance(inbound, list) and k[1] < len(inbound) else None
            wanted = [(r[0], r[1]) for r in _node_refs(data) if (r[0], r[1]) not in memo]
            if k[1] and (k[0], 0) not in memo:  # Keras builds a layer at its first node
                wanted.append((k[0], 0))
            if wanted and k not in opened:  # its inputs first (a cycle: unknown)
                opened.add(k)
                stack.extend(wanted)
                continue
            stack.pop()
            if node is None or (data is None and kind(node) != "InputLayer"):
                memo[k] = None
            elif data is None:
                memo[k] = [_declared(node)]
            else:
                args, kwargs = _arguments(data, memo)
                memo[k] = self.call(node, args, kwargs, record=k[1] == 0)

    def call(
        self, node: dict[str, Any], args: list[Any], kwargs: dict[str, Any], record: bool = True
    ) -> Out | None:
        """The outputs of calling the layer ``node`` on ``args``; its input shapes recorded."""
        cls, cfg = kind(node), node.get("config")
        if not isinstance(cfg, dict):
            return None
        if cls == "InputLayer":
            return [_declared(node)]
        self.budget -= 1
        if self.budget < 0:
            raise AmbiguousGraph("its layers are called more often than its size allows")
        first = args[0] if args else next((kwargs[k] for k in _FIRST if k in kwargs), None)
        if record:
            shapes = _shapes(cls, first, args, kwargs)
            if shapes:
                self.found.setdefault(id(node), shapes)
        if cls in _MODELS:
            return self.model(node, first if flat(first) else None)
        try:
            out = output_of(cls, cfg, first, args, kwargs, self)
        except AmbiguousGraph:  # from a wrapped layer's call: refused, not "malformed"
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError):
            return None  # malformed: Keras would not build it either
        out = [_bounded(s) for s in out] if out else out
        for shape in out or []:
            if shape:
                n = _prod([d for d in shape[1:] if d is not None])
                if n > self.widest[0]:
                    self.widest = (n, f"{_name(node)!r} ({cls})"[:120], shape)
        return out


def _bounded(shape: Any) -> Shape | None:
    """A shape's dimensions, each at most SATURATED; more than MAX_RANK are refused."""
    if not flat(shape):
        return None
    if len(shape) > MAX_RANK:
        raise AmbiguousGraph(f"a tensor has {len(shape):,} dimensions (at most {MAX_RANK})")
    return [d if d is None or d <= SATURATED else SATURATED for d in shape]


def _shapes(cls: str, first: Any, args: list[Any], kwargs: dict[str, Any]) -> Shapes | None:
    """What Keras builds the layer from, named as :func:`.kerasweights.built_shapes` names it."""
    if cls in ("MultiHeadAttention", "GroupedQueryAttention", "GroupQueryAttention"):
        named = {"query": 0, "value": 1, "key": 2}
        found = {
            f"{k}_shape": kwargs.get(k, args[i] if i < len(args) else None)
            for k, i in named.items()
        }
        out: Shapes = {k: v for k, v in found.items() if flat(v)}
        return out if "query_shape" in out and "value_shape" in out else None
    if isinstance(first, list) and first and not flat(first):
        listed: Shapes = {k: v for k, v in zip(_POSITIONS, first, strict=False) if flat(v)}
        return listed or None
    return {"input_shape": first} if flat(first) else None


def _declared(node: dict[str, Any]) -> Shape | None:
    """An ``InputLayer``'s batch shape, read as its constructor reads its arguments."""
    cfg = node.get("config")
    if not isinstance(cfg, dict):
        return None
    batch = cfg.get("batch_input_shape", cfg.get("batch_shape"))
    if batch is not None:
        return _bounded(list(batch)) if flat(batch) else None
    shape = cfg.get("input_shape", cfg.get("shape"))
    size = cfg.get("batch_size")
    if flat(shape) and (size is None or known(size)):
        return _bounded([size, *shape])
    return None


def _input_arg(node: dict[str, Any]) -> Any:
    """A layer's own input shape argument (``input_dim``, or ``input_shape``, which the legacy
    reader sets from ``batch_input_shape``), batch excluded (None: none)."""
    cfg = node.get("config")
    if not isinstance(cfg, dict) or kind(node) == "InputLayer":
        return None
    if cfg.get("input_dim") is not None:
        return [cfg["input_dim"]]
    return cfg.get("batch_input_shape", cfg.get("input_shape"))


def _name(node: dict[str, Any]) -> Any:
    cfg = node.get("config")
    return node.get("name", cfg.get("name") if isinstance(cfg, dict) else None)


def _is_ref(value: Any) -> bool:
    """``[layer, node index, tensor index, ...]``; negative indices refused (Keras would
    index them from the end, red team), and ``true``/``false`` ones (it indexes with them)."""
    if not (
        isinstance(value, list)
        and len(value) >= 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) for v in value[1:3])
    ):
        return False
    if value[1] < 0 or value[2] < 0 or isinstance(value[1], bool) or isinstance(value[2], bool):
        raise AmbiguousGraph(f"a tensor of layer {value[0][:80]!r} is named by {value[1:3]!r}")
    return True


def _refs(value: Any) -> list[Any]:
    if _is_ref(value):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [r for v in items for r in _refs(v)]


def _tensor(ref: Any, memo: dict[tuple[str, int], Out | None]) -> Any:
    out = memo.get((ref[0], ref[1]))
    return out[ref[2]] if out and ref[2] < len(out) else None


def _history(value: Any) -> Any:
    """The ``[layer, node, tensor]`` of a Keras 3 ``__keras_tensor__`` (None: not one)."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        cfg = value.get("config")
        history = cfg.get("keras_history") if isinstance(cfg, dict) else None
        return history if _is_ref(history) else None
    return None


def _node_refs(data: Any) -> list[Any]:
    if isinstance(data, list):  # Keras 2: [[layer, node, tensor, kwargs], ...]
        return [r for e in data if _is_ref(e) for r in [e, *_refs(e[3:])]]
    out, stack = [], [data.get("args"), data.get("kwargs")] if isinstance(data, dict) else []
    while stack:
        v = stack.pop()
        if (h := _history(v)) is not None:
            out.append(h)
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return out


def _arguments(
    data: Any, memo: dict[tuple[str, int], Out | None]
) -> tuple[list[Any], dict[str, Any]]:
    """A node's positional and keyword arguments, each tensor replaced by its shape."""
    if isinstance(data, list):  # Keras 2: one entry per input tensor, kwargs on the first
        refs = [e for e in data if _is_ref(e)]
        shapes = [_tensor(r, memo) for r in refs]
        extra = refs[0][3] if refs and len(refs[0]) > 3 and isinstance(refs[0][3], dict) else {}
        kwargs = {k: _tensor(v, memo) if _is_ref(v) else v for k, v in extra.items()}
        return ([shapes[0]] if len(shapes) == 1 else [shapes]), kwargs

    def value(v: Any) -> Any:
        h = _history(v)
        if h is not None:
            return _tensor(h, memo)
        if isinstance(v, list):
            return [value(i) for i in v]
        return v

    args, kwargs = data.get("args"), data.get("kwargs")
    return (
        [value(a) for a in args] if isinstance(args, list) else [],
        {k: value(v) for k, v in kwargs.items()} if isinstance(kwargs, dict) else {},
    )
