"""scikit-learn (and any other picklable model) through joblib: ``.joblib``, ``.pkl``, ``.pickle``.

These files are pickles, so every load is gated: the front door scans the stream statically
(joblib-aware, see ``security.joblibfile``) and refuses globals outside the allow-list; the
unpickling itself then runs through an unpickler whose ``find_class`` enforces the same
allow-list plus the caller's ``trust=[...]``. Metadata lives in ``PATH.modelstore.json``.
"""

from __future__ import annotations

import copy
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..._info import ScanReport, TensorInfo
from ..._walk import WalkBudget
from ...errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    MissingDependencyError,
    ModelstoreError,
    UnsupportedModelError,
)
from ...security import classify
from ...security.joblibfile import (
    WRAPPER,
    array_value,
    load_file,
    looks_like_pickle,
    scan_file,
    wrapper_fields,
)
from ...security.pickle_scan import Call, Global, mapping_items
from ...security.torchfile import LEGACY_PREFIX
from ...security.torchrecords import plain_value
from ...storage.hashing import PendingDigest
from ..base import (
    ATTR,
    Backend,
    Inspection,
    LoadRequest,
    PredictRequest,
    is_instance_of,
    labels_from_scores,
)
from . import describe, fastdump, writer
from .record import _dtype_name

#: Frameworks whose estimators this backend saves besides scikit-learn (loading them needs trust=).
#: Other libraries' estimators this backend pickles when asked by suffix (``.joblib``); for
#: xgboost and lightgbm their own backends have a higher priority, so a native, pickle-free
#: format is what ``ms.save`` writes by default.
OTHER_ESTIMATORS = ("xgboost", "lightgbm", "catboost")
_NEWOBJ = ("copyreg.__newobj__", "copyreg.__newobj_ex__", "copyreg._reconstructor")
#: Opcodes a protocol 0/1 pickle can start with (MARK, GLOBAL, containers, scalars, ...).
_PROTO01_STARTS = frozenset(b"(c]})ILFSVNKJMXUTGi"[i : i + 1] for i in range(19))


@dataclass(frozen=True)
class SaveOptions:
    """joblib.dump's ``compress`` (0-9, or a (method, level) pair) and pickle ``protocol``."""

    compress: Any = 0
    protocol: int | None = None


class SklearnBackend(Backend):
    """Estimators (and other picklable models) written with ``joblib.dump``."""

    name = "sklearn"
    framework = "sklearn"
    suffixes = (".joblib", ".pkl", ".pickle")
    risk = "pickle"
    extra = "sklearn"
    requires = ("joblib",)
    reads_one_file = True
    embeds_metadata = False
    SaveOptions = SaveOptions

    def sniff(self, path: Path, head: bytes) -> bool:
        return looks_like_pickle(head) and not head.startswith(LEGACY_PREFIX)

    def accepts(self, path: Path, head: bytes) -> bool:
        # protocol 0/1 pickles have no header; a .pkl that starts like one is ours to gate
        return self.sniff(path, head) or (bool(head) and head[:1] in _PROTO01_STARTS)

    def can_save(self, obj: Any) -> bool:
        if is_instance_of(obj, "sklearn.base", "BaseEstimator"):
            return True
        module = type(obj).__module__.split(".")[0]
        return module in OTHER_ESTIMATORS and callable(getattr(obj, "predict", None))

    def can_predict(self, obj: Any) -> bool:
        return self.can_save(obj)

    def save_hint(self, obj: Any) -> str:
        return "it holds scikit-learn estimators (and xgboost/lightgbm models)"

    def pickle_advice(self, obj: Any) -> str:
        return (
            "a scikit-learn model can go to ONNX, which stores no code "
            "(ms.export_onnx(model, 'model.onnx', sample_input=X[:1])), or to skops's .skops"
        )

    def describe(self, obj: Any) -> dict[str, Any]:
        top = type(obj).__module__.split(".")[0]
        mod = sys.modules.get(top)
        return {
            "framework": "sklearn" if top == "sklearn" else top,
            "framework_version": getattr(mod, "__version__", None),
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | PendingDigest | None:
        try:
            return self._write(obj, tmp, meta, options, target)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            if not isinstance(e, pickle.PicklingError) and "pickle" not in str(e):
                raise  # not the pickler refusing a part of the model
            msg = (
                f"{target}: the model cannot be pickled ({type(e).__name__}: {e}); a lambda, "
                f"a function or class defined inside another, an open file, lock or "
                f"connection cannot go into a joblib file: replace it with a module-level "
                f"function or drop it before saving. Nothing was written"
            )
            raise UnsupportedModelError(msg) from e

    def _write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | PendingDigest | None:
        import joblib

        if ATTR in getattr(obj, "__dict__", {}):  # the metadata an earlier save/load attached
            obj = copy.copy(obj)
            del obj.__dict__[ATTR]
        if type(options.compress) in (int, bool) and options.compress == 0:
            # one pass: written, hashed and described together (no re-read, no re-scan)
            dumped = fastdump.save(obj, tmp, options.protocol)
            if dumped is not None:
                meta["checksum"] = dumped.checksum
                if dumped.recorded is not None:
                    writer.remember(target, tmp, describe.inspection(dumped.recorded))
                return dumped.sha256
        joblib.dump(obj, tmp, compress=options.compress, protocol=options.protocol)
        return None

    #: the restricted unpickler is the check: a load reads the file once, not scan-then-load
    checks_while_loading = True

    def scan(self, path: Path) -> ScanReport:
        from ...security.policy import GENERAL

        scanned = scan_file(path)
        return classify(path, self.name, [("pickle", scanned.report)], GENERAL.entry)

    def load(self, path: Path, request: LoadRequest) -> Any:
        import joblib

        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; a pickle holds the whole estimator"
            )
        try:
            if request.trust is True:
                return joblib.load(path)
            trusted = [] if request.trust is False else list(request.trust)
            return load_file(path, trusted)
        except ModelstoreError:
            raise
        except ModuleNotFoundError as e:
            msg = (
                f"{path}: the model needs the module {e.name!r}, which is not installed; "
                f'run: pip install "modelstore-safe[sklearn]" (or the package that provides {e.name})'
            )
            raise MissingDependencyError(msg, name=e.name) from None
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            IndexError,
            KeyError,
            OSError,
        ) as e:
            msg = f"{path}: the pickle could not be read ({type(e).__name__}: {e}); the file is damaged or truncated"
            raise IntegrityError(msg) from None

    def inspect(self, path: Path) -> Inspection:
        written = writer.take(path)  # described while this process wrote it (ms.save)
        if written is not None:
            return written  # type: ignore[no-any-return]
        scanned = scan_file(path)
        rep = scanned.report
        if rep.error:
            raise FormatError(f"{path}: the pickle cannot be read statically ({rep.error})")
        cls, state = _object_of(rep.result)
        details: dict[str, Any] = {}
        if cls:
            details["estimator"] = cls
        if scanned.compression:
            details["compression"] = scanned.compression
        details.update(_describe_state(state))
        arrays = list(_arrays(rep.result))
        framework = (cls or "").split(".")[0] or None
        return Inspection(
            framework=framework,
            tensors=arrays,
            num_params=sum(t.numel for t in arrays),
            extra_metadata=details,
            globals=list(rep.globals),
            labels=details.get("classes_"),
            executes_code=True,  # unpickling calls whatever the stream names (DESIGN section 2)
        )

    def export_onnx(
        self, model: Any, path: Path, sample_input: Any, opset: int | None, dynamic_batch: bool
    ) -> Any:
        from ..onnx.export import export_sklearn

        return export_sklearn(model, path, sample_input, opset, dynamic_batch)

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        import numpy as np

        if request.device not in (None, "cpu"):
            raise ArgumentError(
                f"scikit-learn runs on the CPU; device={request.device!r} is not supported"
            )
        if type(inputs) is np.ndarray and request.output == "raw" and request.batch_size is None:
            # the common call (serving): one array, one batch; ``hasattr`` on an array for an
            # attribute it lacks raises and catches an AttributeError (~1 µs each)
            return np.asarray(model.predict(inputs))
        x = inputs if hasattr(inputs, "iloc") or hasattr(inputs, "shape") else np.asarray(inputs)
        n = x.shape[0]
        step = request.batch_size or n or 1
        method = model.predict
        if request.output == "proba":
            method = getattr(model, "predict_proba", None)
            if method is None:
                raise UnsupportedModelError(
                    f"{type(model).__qualname__} has no predict_proba; use output='raw'"
                )
        parts = [
            np.asarray(method(x[s : s + step] if not hasattr(x, "iloc") else x.iloc[s : s + step]))
            for s in range(0, max(n, 1), step)
        ]
        out = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if request.output != "label":
            return out
        classes = getattr(model, "classes_", None)
        if (
            request.labels
            and classes is not None
            and list(classes) == list(range(len(request.labels)))
        ):
            return [request.labels[int(i)] for i in out]
        if out.ndim > 1:
            return labels_from_scores(out, request.labels)
        return [v.item() if hasattr(v, "item") else v for v in out]


# -- reading the symbolic pickle ---------------------------------------------------------


def _object_of(value: Any) -> tuple[str | None, Any]:
    """The class of a pickled instance and its state, from NEWOBJ / __newobj__ / REDUCE."""
    if not isinstance(value, Call):
        return None, None
    fn = value.func_name
    args = value.args if isinstance(value.args, tuple) else ()
    if fn in _NEWOBJ and args and isinstance(args[0], Global):
        return args[0].qualname, value.state
    return fn, value.state


def _describe_state(state: Any) -> dict[str, Any]:
    budget = WalkBudget()  # one for the whole description, not one per setting
    return describe.describe_state(
        state,
        lambda st: mapping_items(st) or [],
        _object_of,
        array_value,
        lambda v: plain_value(v, 0, budget),
    )


def _arrays(value: Any) -> Any:
    """(dotted path, TensorInfo) of every numpy array joblib stored raw, depth-first."""
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", value)]
    budget = WalkBudget()
    while stack:
        path, v = stack.pop()
        if not budget.spend(path):
            return
        if id(v) in seen or len(seen) > 100_000:
            continue
        seen.add(id(v))
        if isinstance(v, Call):
            if v.func_name == WRAPPER:
                fields = wrapper_fields(v)
                if fields:
                    shape, dtype, itemsize, _ = fields
                    n = 1
                    for d in shape:
                        n *= d
                    yield TensorInfo(
                        path.strip(".") or "<array>", shape, _dtype_name(dtype), n * itemsize
                    )
                continue
            children = [
                (f"{path}", v.state),
                *[(f"{path}.{i}", a) for i, a in enumerate(v.appends)],
            ]
            children += [(f"{path}.{k}", val) for k, val in v.items if isinstance(k, (str, int))]
            stack.extend(reversed(children))
        else:
            items = mapping_items(v)
            if items is not None:
                stack.extend(
                    reversed(
                        [(f"{path}.{k}", val) for k, val in items if isinstance(k, (str, int))]
                    )
                )
            elif isinstance(v, (list, tuple)):
                stack.extend(reversed([(f"{path}.{i}", val) for i, val in enumerate(v)]))
