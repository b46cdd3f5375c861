"""Audit a Keras model config: resolve every object it names as Keras 3 would, without Keras.

Keras turns a config into objects in ``serialization_lib.deserialize_keras_object``: a dict
with ``class_name`` and ``config`` names a class (or, with ``class_name="function"``, a function)
through ``module``, ``class_name`` and ``registered_name``:

- ``module + "." + name`` is looked up among Keras' exported names first, so
  ``module="keras", class_name="layers.Lambda"`` is the Lambda layer;
- else Keras imports ``module`` (any ``keras.*`` module) and takes ``name`` from it if it is a
  ``KerasSaveable`` class;
- functions with ``module="builtins"`` are looked up in the activations, losses, metrics, ...;
- a ``registered_name`` (or the function name) is first looked up among custom objects
  registered in the process;
- without ``module`` (legacy H5 configs, and the families' ``get``), ``class_name`` (or the
  ``registered_name`` of a function) is a plain name in one of Keras' dictionaries;
- ``__lambda__`` is Python bytecode, loaded unless safe mode is on.

Every node is resolved through each route that could apply, against the tables in
:mod:`.kerasnames` (generated from the installed Keras); every object any route reaches must be
an allowed modelling API. Anything else is a finding: Lambda layers and bytecode under any
spelling and at any depth, file and download utilities, resolvers, unknown spellings, custom
objects, path-like layer arguments (``StringLookup(vocabulary="/etc/passwd")``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from .._info import Finding
from . import kerasnames
from .kerasgraph import MAX_UNFOLDED, UNFOLDED_FACTOR, unfolded_calls, unreached_layers
from .kerasregex import HOLDERS, MAX_ARG_STRING, PathPatterns, longest_string

#: What Keras searches for ``module="builtins"`` functions (serialization_lib.BUILTIN_MODULES).
BUILTIN_MODULES = (
    "activations",
    "constraints",
    "initializers",
    "losses",
    "metrics",
    "optimizers",
    "regularizers",
)
#: Subject of Python bytecode outside a Lambda layer's own function.
LAMBDA_BYTECODE = "__lambda__"
LAMBDA = "keras.layers.Lambda"
#: Layers that read a vocabulary (or IDF weights) from a file when given a string.
PATH_ARGUMENTS = {
    "keras.layers.StringLookup": ("vocabulary", "idf_weights"),
    "keras.layers.IntegerLookup": ("vocabulary", "idf_weights"),
    "keras.layers.TextVectorization": ("vocabulary", "idf_weights"),
}
#: Values ``__numpy__`` and ``__tensor__`` nodes may declare (numpy builds them before Keras checks).
DTYPES = frozenset(
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
        "string",
    ]
)
#: Nodes Keras' legacy JSON reader turns into TensorFlow objects by a registry name.
TF_REGISTRY_NODES = ("TypeSpec", "CompositeTensor")
_PLAIN_SPECIALS = (
    "__keras_tensor__",
    "__bytes__",
    "__ellipsis__",
    "__slice__",
    "__tuple__",
    "TensorShape",
)

_NAMESPACE_REASONS = (
    (
        "keras.utils.",
        "a Keras utility (file, download, dataset or process helpers), not a modelling API",
    ),
    ("keras.saving.", "a Keras saving or loading function, not a modelling API"),
    (
        "keras.config.",
        "a Keras configuration switch (it can turn safe mode off), not a modelling API",
    ),
    ("keras.backend.", "a Keras backend utility, not a modelling API"),
    (
        "keras.callbacks.",
        "a training callback (writes files, contacts servers), not a modelling API",
    ),
    ("keras.datasets.", "a dataset downloader, not a modelling API"),
    ("keras.applications.", "an application builder (downloads weights), not a modelling API"),
    ("keras.models.", "a model loading or cloning function, not a modelling API"),
    ("keras.export.", "a model exporter, not a modelling API"),
    ("keras.preprocessing.", "a file or image utility, not a modelling API"),
)


@dataclass
class Audit:
    """Findings, and the subjects among them that Keras loads only with safe mode off."""

    findings: list[Finding] = field(default_factory=list)
    needs_unsafe: set[str] = field(default_factory=set)

    def add(self, subject: str, reason: str, *, unsafe: bool = False) -> None:
        if all(f.subject != subject for f in self.findings):
            self.findings.append(Finding(subject, "critical", reason))
        if unsafe:
            self.needs_unsafe.add(subject)


INPUT_LAYER = "keras.layers.InputLayer"


def plain_targets(name: str) -> tuple[str, ...]:
    """What a plain name can resolve to (optimizers are looked up case-insensitively)."""
    plain = _tables()[2]
    found = plain.get(name, ())
    return found + plain.get(name.lower(), ()) if name.lower() != name else found


@functools.lru_cache(maxsize=1)
def _known(name: str, names: frozenset[str]) -> str | None:
    return name if name in names else None


@functools.lru_cache(maxsize=1)  # parsed once: the audit asks for them for every node
def _tables() -> tuple[
    frozenset[str], dict[str, str], dict[str, tuple[str, ...]], dict[str, str], frozenset[str]
]:
    allowed = frozenset(n for block in kerasnames.ALLOWED_BY_GROUP.values() for n in block.split())
    aliases = dict(item.split("=", 1) for item in kerasnames._ALIASES.split())
    plain = {
        k: tuple(v.split("|"))
        for k, v in (item.split("=", 1) for item in kerasnames._PLAIN.split())
    }
    legacy = dict(item.split("=", 1) for item in kerasnames._LEGACY_FUNCTIONS.split())
    return allowed, aliases, plain, legacy, frozenset(kerasnames._BUILTIN_REFUSED.split())


def canonical(spelling: str) -> str | None:
    """The canonical name of what ``module.name`` resolves to, if it is a known object."""
    allowed, aliases = _tables()[:2]
    if spelling in aliases:
        return aliases[spelling]
    return spelling if spelling in allowed or spelling in kerasnames.REFUSED else None


def why_refused(name: str) -> str:
    if name in kerasnames.REFUSED:
        return kerasnames.REFUSED[name]
    if name.rsplit(".", 1)[-1] in ("get", "serialize", "deserialize"):
        return "a resolver that turns any name or config into an object, not a modelling API"
    for prefix, reason in _NAMESPACE_REASONS:
        if name.startswith(prefix):
            return reason
    return f"not on modelstore's allow-list of Keras {kerasnames.KERAS_VERSION} modelling APIs"


def audit_config(config: Any, *, legacy_root: bool = False, where: str = "the model") -> Audit:
    """Everything in ``config`` that a Keras load could run, import or read from elsewhere.

    ``legacy_root``: the config is an H5 ``model_config`` or ``training_config`` (plain names
    at the top, Keras' legacy JSON reader).
    """
    out = Audit()
    _Walker(out, legacy_root).walk(config, where)
    return out


class _Walker:
    def __init__(self, out: Audit, legacy: bool) -> None:
        self.out, self.legacy = out, legacy
        self.owned: set[int] = set()  # bytecode nodes that belong to a Lambda layer's finding
        self.unreached: set[int] = set()  # layer nodes of a Functional no output depends on

    def walk(self, root: Any, where: str) -> None:
        self.patterns = PathPatterns(root)
        listed, unfolded = unfolded_calls(root)
        if unfolded > max(MAX_UNFOLDED, UNFOLDED_FACTOR * listed):
            self.out.add(
                "<nested model reuse>",
                f"{where} runs {unfolded:,} layer calls when Keras traces it (its first "
                f"predict), from {listed:,} in its config: nested models each called several "
                f"times multiply (at most {MAX_UNFOLDED:,}, or {UNFOLDED_FACTOR}x the calls "
                "written, are accepted)",
            )
        stack: list[tuple[Any, str]] = [(root, where)]
        while stack:
            node, where = stack.pop()
            if isinstance(node, list):
                stack.extend((item, where) for item in node)
                continue
            if not isinstance(node, dict):
                continue
            self.unreached.update(unreached_layers(node))
            cls = node.get("class_name")
            if "config" in node and "class_name" in node and not isinstance(cls, str):
                self.out.add(f"<malformed at {where}>", "a class_name that is not a string")
            elif isinstance(cls, str) and cls in TF_REGISTRY_NODES and self.legacy:
                self.out.add(
                    f"tf.{cls}", "a TensorFlow object rebuilt from a registry name (legacy H5 JSON)"
                )
            elif isinstance(cls, str) and "config" in node:
                where = self.node(node, cls, where)
            stack.extend((value, where) for value in node.values())

    def node(self, node: dict[str, Any], cls: str, where: str) -> str:
        """Check one object node; returns the location its children are reported at."""
        cfg = node.get("config")
        if cls == "__lambda__":
            if id(node) not in self.owned:
                self.out.add(
                    LAMBDA_BYTECODE,
                    f"Python bytecode (a serialised lambda) in {where}, run when "
                    "the model is built",
                    unsafe=True,
                )
            return where
        if cls in _PLAIN_SPECIALS:
            return where
        if cls in ("__numpy__", "__tensor__"):
            dtype = cfg.get("dtype") if isinstance(cfg, dict) else None
            if dtype not in DTYPES:
                self.out.add(
                    f"<{cls} dtype {str(dtype)[:40]}>",
                    f"an array of an unsupported dtype in {where}",
                )
            return where
        if cls == "__typespec__":
            name = node.get("spec_name")
            self.resolve(
                {**node, "class_name": name if isinstance(name, str) else "?"}, "class", where
            )
            return where
        kind = "function" if cls == "function" else "class"
        target = self.resolve(node, kind, where)
        name = cfg.get("name") if isinstance(cfg, dict) else None
        here = f"{where} > {name}" if isinstance(name, str) and name else where
        if target == LAMBDA and isinstance(cfg, dict):
            self.lambda_layer(cfg, here)
        if target in HOLDERS and (problem := self.patterns.problem(target, cfg)):
            self.out.add(
                f"<{target.rsplit('.', 1)[-1]} patterns of {here.rsplit(' > ', 1)[-1][:60]}>",
                f"{problem}: Keras matches these regular expressions against layer and "
                f"variable paths while it builds the model ({here})",
            )
        inbound = node.get("inbound_nodes")
        if inbound and longest_string(inbound) > MAX_ARG_STRING:
            self.out.add(
                f"<long argument of {str(name)[:60]!r}>",
                f"a string of over {MAX_ARG_STRING:,} characters in the arguments of {here}: "
                "Keras parses an op's arguments (a Rearrange pattern) each time it rebuilds "
                "the graph, some in quadratic time",
            )
        unreached = id(node) in self.unreached or (inbound is not None and not inbound)
        if unreached and target not in (None, INPUT_LAYER):
            # Keras builds every listed layer from its build_config, and never writes one no
            # node reaches or no output depends on (red team: 2 KB files, gigabytes)
            self.out.add(
                f"<unreached layer {str(name)[:60]!r}>",
                f"a layer no output of the model depends on ({here}): Keras builds it all the "
                "same, and never writes one",
            )
        for arg in PATH_ARGUMENTS.get(target or "", ()):
            value = cfg.get(arg) if isinstance(cfg, dict) else None
            if isinstance(value, str):
                self.out.add(
                    f"{target}.{arg}", f"{here} reads its {arg} from the path {value[:200]!r}"
                )
        if self.legacy and "module" not in node and isinstance(cfg, dict):
            self.legacy_strings(cfg, here)
        return here

    def lambda_layer(self, cfg: dict[str, Any], where: str) -> None:
        code = False
        for key in ("function", "output_shape"):
            fn = cfg.get(key)
            if isinstance(fn, dict) and fn.get("class_name") == "__lambda__":
                self.owned.add(id(fn))
                code = True
            elif key == "function" and isinstance(
                fn, list
            ):  # Keras 2 H5: [code, defaults, closure]
                code = True
        if code or cfg.get("function_type") == "lambda":
            self.out.add(
                LAMBDA,
                f"a Lambda layer ({where}) carrying Python bytecode, run when the model is built",
                unsafe=True,
            )
        else:
            self.out.add(LAMBDA, f"a Lambda layer ({where}) calling a Python function")

    def legacy_strings(self, cfg: dict[str, Any], where: str) -> None:
        """Keras' legacy reader turns a top-level string that names a function into that function."""
        legacy = _tables()[3]
        for key, value in cfg.items():
            if key != "name" and isinstance(value, str) and value in legacy:
                self.require((legacy[value],), value, where)

    def resolve(self, node: dict[str, Any], kind: str, where: str) -> str | None:
        """Every object the node can resolve to must be allowed; returns the canonical name."""
        module = node.get("module")
        registered = node.get("registered_name")
        name = node.get("config") if kind == "function" else node.get("class_name")
        if (
            not isinstance(name, str)
            or not (module is None or isinstance(module, str))
            or not (registered is None or isinstance(registered, str))
        ):
            self.out.add(
                f"<malformed at {where}>", "an object whose module or name is not a string"
            )
            return None
        subject = f"{module}.{name}" if module else name
        if registered not in (None, name):
            self.out.add(
                subject,
                f"a custom object registered as {registered!r} ({where}): Keras takes it "
                "from the objects registered in this process, not from the file",
            )
            return None
        if module is None:  # legacy layers and the families' plain-name lookups
            return self.require(plain_targets(name), name, where)
        routes: list[str] = []
        if kind == "function" and module == "builtins":  # Keras tries each family in turn
            refused = _tables()[4]
            routes = [
                c
                for m in BUILTIN_MODULES
                if (c := canonical(f"keras.{m}.{name}") or _known(f"keras.{m}.{name}", refused))
            ]
        elif module == "keras" or module.startswith("keras."):
            found = canonical(f"{module}.{name}")
            if found is None:
                self.out.add(subject, f"{why_refused(subject)} ({where})")
                return None
            routes = [found]
        if not routes:
            self.out.add(
                subject,
                f"a custom {kind} from outside Keras ({where}): only objects registered in "
                "this process could resolve it",
            )
            return None
        return self.require(tuple(routes) + plain_targets(name), subject, where)

    def require(self, targets: tuple[str, ...], subject: str, where: str) -> str | None:
        allowed = _tables()[0]
        if not targets:
            self.out.add(
                subject,
                f"a custom object ({where}): only objects registered in this process "
                "could resolve it",
            )
            return None
        refused = [t for t in targets if t not in allowed and t != LAMBDA]
        for target in refused:
            self.out.add(
                target,
                f"{why_refused(target)} ({where})",
                unsafe=target == "keras.layers.TFSMLayer",
            )
        if LAMBDA in targets:
            return LAMBDA  # reported by the Lambda check, with what it carries
        return None if refused else targets[0]
