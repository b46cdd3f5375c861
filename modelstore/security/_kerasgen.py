"""Generate ``kerasnames.py`` (the Keras allow-list) from the installed Keras.

Run ``python -m modelstore.security._kerasgen > modelstore/security/kerasnames.py`` after a Keras
upgrade, review the diff, and commit it. A test regenerates the text and fails when the installed
Keras exports, defines or looks up names the checked-in list does not know.

What Keras 3 can reach from a config (``serialization_lib.deserialize_keras_object`` and
``_retrieve_class_or_fn``, and the legacy H5 path in ``legacy/saving``), and what is recorded:

- ``ALLOWED_BY_GROUP``: the canonical names (exported name, else ``module.Name``) of modelling
  APIs, by group, each group with its reason;
- ``_ALIASES``: other spellings of allowed and refused objects: names in
  ``api_export.REGISTERED_NAMES_TO_OBJS`` (``module + "." + name`` resolves there first) and every
  ``KerasSaveable`` subclass at ``cls.__module__ + "." + cls.__name__`` (the import route: Keras
  imports the module and takes the class), each mapped to its canonical name;
- ``PLAIN``: every name in the dictionaries Keras looks plain names up in (``keras.src.layers``'s
  namespace for legacy H5 layers, each family's ``ALL_OBJECTS_DICT``, the schedules module);
- ``_BUILTIN_REFUSED``: exported names in the families Keras searches for ``module="builtins"``
  functions that are not allowed, so that search cannot skip over them;
- ``_LEGACY_FUNCTIONS``: the functions in the legacy layer namespace, which Keras' legacy reader
  substitutes for a string naming them at the top of a layer's config.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from typing import Any

#: Modelling namespaces (exported names): everything in them is allowed except the names below.
EXPORTED_GROUPS = {
    "keras.layers": "layers: tensor computations built from their config",
    "keras._legacy.layers": "layers kept for old models (AlphaDropout, RandomHeight, ...)",
    "keras.activations": "activation functions: pure tensor math",
    "keras.initializers": "weight initialisers: fill tensors from a seed or constant",
    "keras.regularizers": "weight penalties: pure tensor math",
    "keras.constraints": "weight constraints: pure tensor math",
    "keras.losses": "losses: pure tensor math",
    "keras.metrics": "metrics: pure tensor math with state",
    "keras.optimizers": "optimizers and learning-rate schedules: update rules",
    "keras.dtype_policies": "dtype policies recorded on every layer",
    "keras.quantizers": "quantisation configs and functions: tensor math",
    "keras.random": "random tensors from a seed",
    "keras.ops": "tensor operations (functional models record them as operations)",
    "keras.distillation": "distillation models and losses",
}
#: Single exported names outside those namespaces that are modelling APIs.
EXPORTED_SINGLES = {
    "keras.Layer": "base classes of models, layers and their parts",
    "keras.Model": "base classes of models, layers and their parts",
    "keras.Sequential": "base classes of models, layers and their parts",
    "keras.Operation": "base classes of models, layers and their parts",
    "keras.Loss": "base classes of models, layers and their parts",
    "keras.Metric": "base classes of models, layers and their parts",
    "keras.Optimizer": "base classes of models, layers and their parts",
    "keras.Initializer": "base classes of models, layers and their parts",
    "keras.Regularizer": "base classes of models, layers and their parts",
    "keras.Quantizer": "base classes of models, layers and their parts",
    "keras.InputSpec": "base classes of models, layers and their parts",
    "keras.DTypePolicy": "dtype policies recorded on every layer",
    "keras.FloatDTypePolicy": "dtype policies recorded on every layer",
    "keras.utils.FeatureSpace": "a preprocessing model (a KerasSaveable built from layers)",
}
#: Packages under keras.src whose KerasSaveable classes that are not exported are allowed
#: (functional models record operations and base classes by module and class name).
SRC_PACKAGES = {
    "layers": "layers and their base classes",
    "models": "the Functional and Sequential model classes",
    "ops": "operations recorded by functional models (keras.ops.* called on Keras tensors)",
    "activations": "activation layers",
    "losses": "loss wrappers",
    "metrics": "metric base classes",
    "optimizers": "optimizer base classes",
    "backend": "the backend's optimizer base class",
    "quantizers": "quantizer classes",
    "trainers": "the compile-time loss and metric containers",
    "applications": "layers defined by the bundled applications (LayerScale, StochasticDepth, ...)",
    "distillation": "distillation models and losses",
}
#: Names inside allowed namespaces that are refused anyway, with the reason.
REFUSED = {
    "keras.layers.Lambda": "a Lambda layer runs Python code from the file (bytecode or a named function)",
    "keras.layers.TorchModuleWrapper": "unpickles a whole torch module stored in the config",
    "keras.layers.TFSMLayer": "loads and runs a TensorFlow SavedModel from a path named in the config",
    "keras.layers.JaxLayer": "wraps arbitrary JAX functions named in the config",
    "keras.layers.FlaxLayer": "wraps an arbitrary Flax module named in the config",
    **{
        f"keras.src.layers.{path}": (
            "a base class Keras never writes by name (it writes the concrete layer); the size "
            "checks know the concrete layers, so a config naming the base would pass them "
            "(red team: IndexLookup with StringLookup's arguments took a load to 3 GB)"
        )
        for path in (
            "convolutional.base_conv.BaseConv",
            "convolutional.base_conv_transpose.BaseConvTranspose",
            "convolutional.base_depthwise_conv.BaseDepthwiseConv",
            "convolutional.base_separable_conv.BaseSeparableConv",
            "merging.base_merge.Merge",
            "pooling.base_adaptive_pooling.BaseAdaptiveAveragePooling",
            "pooling.base_adaptive_pooling.BaseAdaptiveMaxPooling",
            "pooling.base_adaptive_pooling.BaseAdaptivePooling",
            "pooling.base_global_pooling.BaseGlobalPooling",
            "pooling.base_pooling.BasePooling",
            "preprocessing.data_layer.DataLayer",
            "preprocessing.image_preprocessing.base_image_preprocessing_layer."
            "BaseImagePreprocessingLayer",
            "preprocessing.index_lookup.IndexLookup",
            "regularization.spatial_dropout.BaseSpatialDropout",
            "rnn.conv_lstm.ConvLSTM",
            "rnn.conv_lstm.ConvLSTMCell",
        )
    },
}
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
#: Resolvers (a string or config in, any object out) are never modelling APIs.
RESOLVERS = ("get", "serialize", "deserialize")


def _canonical(obj: Any, api_export: Any) -> str:
    name = api_export.get_name_from_symbol(obj)
    return str(name) if name else f"{obj.__module__}.{obj.__qualname__}"


def _saveables(base: type) -> list[type]:
    out: set[type] = set()
    stack = [base]
    while stack:
        sub: type
        for sub in stack.pop().__subclasses__():
            if sub not in out and sub.__module__.startswith("keras."):
                out.add(sub)
                stack.append(sub)
    return sorted(out, key=lambda c: (c.__module__, c.__qualname__))


def _plain_dicts() -> list[dict[str, Any]]:
    """The dictionaries Keras looks plain names up in (legacy layers, families, schedules)."""
    from keras.src import (
        activations,
        constraints,
        dtype_policies,
        initializers,
        layers,
        losses,
        metrics,
        models,
        optimizers,
        quantizers,
        regularizers,
    )
    from keras.src.optimizers.schedules import learning_rate_schedule

    legacy = dict(vars(layers))
    legacy.update(
        InputLayer=layers.InputLayer,
        Functional=models.Functional,
        Model=models.Model,
        Sequential=models.Sequential,
    )
    families = [
        m.ALL_OBJECTS_DICT
        for m in (
            activations,
            initializers,
            regularizers,
            constraints,
            losses,
            metrics,
            optimizers,
            dtype_policies,
            quantizers,
        )
    ]
    return [legacy, *families, dict(vars(learning_rate_schedule))]


def allowed_group(canonical: str) -> str | None:
    """The group that allows ``canonical``, or None when it is not a modelling API."""
    if canonical in REFUSED or canonical.rsplit(".", 1)[-1] in RESOLVERS:
        return None
    if canonical in EXPORTED_SINGLES:
        return canonical
    for prefix in EXPORTED_GROUPS:
        if canonical.startswith(prefix + "."):
            return prefix
    parts = canonical.split(".")
    if parts[:2] == ["keras", "src"] and len(parts) > 3 and parts[2] in SRC_PACKAGES:
        return f"keras.src.{parts[2]}"
    return None


def collect() -> dict[str, Any]:
    """Read the installed Keras: every spelling a config can use, and what it resolves to."""
    import keras
    from keras.src import api_export
    from keras.src.saving.keras_saveable import KerasSaveable

    exported = {
        name: _canonical(obj, api_export)
        for name, obj in api_export.REGISTERED_NAMES_TO_OBJS.items()
    }
    spellings: dict[str, str] = {}
    for cls in _saveables(KerasSaveable):
        spellings[f"{cls.__module__}.{cls.__name__}"] = _canonical(cls, api_export)
    plain: dict[str, set[str]] = {}
    for table in _plain_dicts():
        for name, obj in table.items():
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)):
                plain.setdefault(name, set()).add(_canonical(obj, api_export))
    legacy_functions = {
        n: _canonical(obj, api_export)
        for n, obj in _plain_dicts()[0].items()
        if not n.startswith("_") and inspect.isfunction(obj)
    }
    canon = (
        set(exported.values()) | set(spellings.values()) | {c for cs in plain.values() for c in cs}
    )
    allowed = {c for c in canon if allowed_group(c) is not None}
    for name in sorted(allowed):
        obj = api_export.get_symbol_from_name(name)
        source = (
            inspect.getsource(obj.from_config)
            if inspect.isclass(obj) and hasattr(obj, "from_config")
            else ""
        )
        if "safe_mode" in source:  # safe mode must matter only for what we refuse
            raise AssertionError(
                f"{name}.from_config consults safe mode; review it before allowing it"
            )
    return {
        "version": keras.__version__,
        "exported": exported,
        "spellings": spellings,
        "plain": plain,
        "allowed": allowed,
        "legacy_functions": legacy_functions,
    }


def _block(name: str, doc: str, items: list[str]) -> str:
    body = textwrap.fill(" ".join(items), width=96, break_long_words=False, break_on_hyphens=False)
    return f'#: {doc}\n{name} = """\n{body}\n"""\n'


def render(data: dict[str, Any]) -> str:
    """The text of kerasnames.py. Spellings of names that are neither allowed nor refused with a
    reason are left out: the auditor refuses every spelling it does not find."""
    known = data["allowed"] | set(REFUSED)
    aliases = {**data["exported"], **data["spellings"]}
    aliased = [f"{n}={c}" for n, c in sorted(aliases.items()) if c in known and n != c]
    plain = [f"{n}={'|'.join(sorted(cs))}" for n, cs in sorted(data["plain"].items())]
    legacy = [f"{n}={c}" for n, c in sorted(data["legacy_functions"].items())]
    families = tuple(f"keras.{m}." for m in BUILTIN_MODULES)
    builtin_refused = [
        n
        for n, c in sorted(data["exported"].items())
        if n.startswith(families) and n.count(".") == 2 and c not in known
    ]
    groups: dict[str, list[str]] = {}
    for c in sorted(data["allowed"]):
        groups.setdefault(str(allowed_group(c)), []).append(c)
    reasons = {
        **EXPORTED_GROUPS,
        **EXPORTED_SINGLES,
        **{f"keras.src.{k}": v for k, v in SRC_PACKAGES.items()},
    }
    lines = [
        '"""The Keras objects a model config may name: data generated from the installed Keras.',
        "",
        f"Generated by ``python -m modelstore.security._kerasgen`` from Keras {data['version']}; do not edit",
        "by hand (see that module for what each table holds and why each group is allowed).",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        f"KERAS_VERSION = {data['version']!r}",
        "",
        "#: Why each group of allowed names is allowed.",
        "GROUPS: dict[str, str] = {",
        *[f"    {g!r}: {reasons[g]!r}," for g in groups],
        "}",
        "",
        "#: Modelling APIs refused anyway, with the reason.",
        "REFUSED: dict[str, str] = {",
        *[f"    {k!r}: {v!r}," for k, v in REFUSED.items()],
        "}",
        "",
        "#: Allowed canonical names, by group.",
        "ALLOWED_BY_GROUP: dict[str, str] = {",
    ]
    for group, names in groups.items():
        body = textwrap.fill(
            " ".join(names), width=92, break_long_words=False, break_on_hyphens=False
        )
        lines.append(f'    {group!r}: """\n{textwrap.indent(body, "        ")}\n    """,')
    lines += ["}", ""]
    out = "\n".join(lines) + "\n"
    out += (
        _block(
            "_ALIASES",
            "Other spellings (exported aliases, ``cls.__module__.cls.__name__``) of known names.",
            aliased,
        )
        + "\n"
    )
    out += _block(
        "_PLAIN",
        "Plain names Keras looks up in its dictionaries, ``=canonical[|canonical]``.",
        plain,
    )
    out += "\n" + _block(
        "_BUILTIN_REFUSED",
        "Exported names Keras searches for ``module='builtins'`` "
        "functions that are not allowed (so that route cannot skip them).",
        builtin_refused,
    )
    out += "\n" + _block(
        "_LEGACY_FUNCTIONS",
        "Functions Keras' legacy H5 reader substitutes for a string "
        "naming them in a layer's config.",
        legacy,
    )
    return out


if __name__ == "__main__":
    sys.stdout.write(render(collect()))
