"""``.skops`` files: scikit-learn models stored by skops as a JSON schema plus ``.npy`` arrays.

skops builds objects from the schema only after its own audit of the types named there; a
type it does not trust by default must be passed in ``trusted=``. modelstore puts that audit
under its one trust policy:

1. the archive is read by the strict zip reader (only ``schema.json`` and array members);
2. every type, function and class the schema names anywhere is collected from the JSON itself
   (a walk over all of it, not skops' own list) and must be on modelstore's allow-list, or
   named by the caller's ``trust=[...]``;
3. types whose safety on the allow-list rests on modelstore's unpickler validators
   (:data:`VALIDATED_MODULES`: tree node arrays, neighbour trees, libsvm and boosting
   structures...) are not passed to skops by default, since skops builds them without those
   validators: they need the caller's ``trust=[...]``;
4. skops then loads the same bytes with ``trusted=`` exactly those names: names from the
   caller or the allow-list, never a list read from the file. ``trust=True`` skips 2-3.

``ms.save(estimator, "m.skops")`` writes with ``skops.io.dump``; ``convert`` goes between
``.joblib`` and ``.skops`` both ways.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ..._info import Finding, ScanReport
from ...errors import ArgumentError, FormatError, IntegrityError, UnsafeModelError
from ...security import STRUCTURE, jsonsafe
from ...security.zipcheck import ArchiveError, check_archive
from ..base import Backend, Inspection, LoadRequest, PredictRequest, is_instance_of

#: allow-listed for the pickle path only because modelstore's unpickler validates their state
#: (indices, node arrays) while it builds them; skops builds them without those checks
VALIDATED_MODULES = (
    "sklearn.tree._tree",
    "sklearn.neighbors._ball_tree",
    "sklearn.neighbors._kd_tree",
    "sklearn.neighbors._binary_tree",
    "sklearn.metrics._dist_metrics",
    "sklearn._loss._loss",
    "sklearn.linear_model._sgd_fast",
    "sklearn.ensemble._hist_gradient_boosting",
    "sklearn.svm",
    "sklearn.cluster._k_means",
)
#: data types skops writes as JSON values (the allow-list has no entry: pickle needs none)
JSON_TYPES = ("builtins.NoneType",)
MAX_SCHEMA = 64 << 20
MAX_NAMES = 10_000


def _member(name: str) -> bool:
    return name == "schema.json" or (
        name.endswith((".npy", ".npz", ".skops"))
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
    )


def schema_names(schema: Any) -> list[str]:
    """Every ``module.name`` the schema names: node classes and the functions, methods and
    types that function/type nodes refer to. Over-collects rather than misses (THREATS 3)."""
    found: dict[str, None] = {}
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            module, cls = node.get("__module__"), node.get("__class__")
            if isinstance(module, str) and isinstance(cls, str):
                found[f"{module}.{cls}"] = None
            path, func = node.get("module_path"), node.get("function")
            if isinstance(path, str) and isinstance(func, str):
                found[f"{path}.{func}"] = None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        if len(found) > MAX_NAMES:
            raise FormatError(f"the skops schema names more than {MAX_NAMES} types")
    return list(found)


class SkopsBackend(Backend):
    """scikit-learn estimators in skops' format (``pip install skops``)."""

    name = "skops"
    framework = "sklearn"
    suffixes = (".skops",)
    risk = "restricted"  # no pickle; every type the schema names is audited before skops builds it
    extra = "skops"
    requires = ("skops",)
    priority = -1  # only when asked for by suffix or format="skops"

    def sniff(self, path: Path, head: bytes) -> bool:
        return False  # a zip like many others: the .skops suffix decides

    def accepts(self, path: Path, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04")

    def can_save(self, obj: Any) -> bool:
        return is_instance_of(obj, "sklearn.base", "BaseEstimator")

    def can_predict(self, obj: Any) -> bool:
        return False  # a loaded estimator is run by the scikit-learn backend

    def describe(self, obj: Any) -> dict[str, Any]:
        import sklearn
        import skops

        return {
            "framework": "sklearn",
            "framework_version": sklearn.__version__,
            "skops_version": skops.__version__,
            "model_class": f"{type(obj).__module__}:{type(obj).__qualname__}",
        }

    def write(
        self, obj: Any, tmp: Path, meta: dict[str, Any], options: Any, target: Path
    ) -> str | None:
        import skops.io

        if "__modelstore_meta__" in getattr(obj, "__dict__", {}):
            import copy

            obj = copy.copy(obj)
            del obj.__dict__["__modelstore_meta__"]
        with open(tmp, "wb") as f:
            skops.io.dump(obj, f)
        return None

    # -- reading --------------------------------------------------------------------------
    def _read(self, path: Path) -> tuple[bytes, list[str]]:
        """The file's bytes (checked as one strict archive) and the names its schema uses."""
        data = path.read_bytes()
        folder = tempfile.mkdtemp(prefix="modelstore-skops-")
        try:
            copy = Path(folder) / "m.skops"
            copy.write_bytes(data)
            try:
                infos = check_archive(copy, expected=_member)
            except ArchiveError as e:
                raise UnsafeModelError(
                    f"{path}: refusing to load: {e.detail}. Nothing from the file was run", []
                ) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        schema_info = next((i for i in infos if i.filename == "schema.json"), None)
        if schema_info is None or schema_info.file_size > MAX_SCHEMA:
            raise FormatError(
                f"{path}: not a skops file (no schema.json of at most {MAX_SCHEMA} bytes)"
            )
        import io

        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            schema = jsonsafe.loads(zf.read("schema.json"), where=f"{path} (schema.json)")
        try:
            return data, schema_names(schema)
        except FormatError as e:
            raise FormatError(f"{path}: {e}") from None

    def _audit(self, names: list[str], trust: Any) -> tuple[list[str], list[tuple[str, str]]]:
        """(names to pass skops as trusted, refused names with why)."""
        from ...security.policy import GENERAL

        trusted = set(trust) if isinstance(trust, list) else set()
        ok, refused = [], []
        for name in names:
            if name in trusted:
                ok.append(name)
            elif name.startswith(VALIDATED_MODULES):
                refused.append(
                    (
                        name,
                        "allowed only through modelstore's own unpickler, which validates its "
                        "state; skops builds it without those checks",
                    )
                )
            elif name in GENERAL or name in JSON_TYPES:
                ok.append(name)
            else:
                refused.append((name, "not on modelstore's allow-list"))
        return ok, refused

    def scan(self, path: Path) -> ScanReport:
        try:
            _, names = self._read(path)
        except UnsafeModelError as e:
            return ScanReport(
                str(path), self.name, "unsafe", [Finding(STRUCTURE, "critical", str(e))]
            )
        except FormatError as e:
            return ScanReport(
                str(path),
                self.name,
                "unknown",
                [Finding("file", "warning", f"not this format: {e}")],
            )
        _, refused = self._audit(names, False)
        findings = [Finding(n, "critical", why) for n, why in refused]
        return ScanReport(str(path), self.name, "unsafe" if findings else "safe", findings, names)

    def load(self, path: Path, request: LoadRequest) -> Any:
        import skops.io

        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= is for weights files; a .skops file holds the whole model"
            )
        data, names = self._read(path)
        if request.trust is True:
            trusted = skops.io.get_untrusted_types(data=data)  # the caller trusts the author
        else:
            trusted, refused = self._audit(names, request.trust)
            if refused:
                recipe = ", ".join(repr(n) for n, _ in refused[:10])
                msg = (
                    f"{path}: refusing to load: the file needs {', '.join(f'{n} ({w})' for n, w in refused[:10])}. "
                    f"Nothing from the file was run. If you trust the file's author, pass trust=[{recipe}]"
                )
                raise UnsafeModelError(msg, [n for n, _ in refused])
        try:
            return skops.io.loads(data, trusted=sorted(set(trusted)))
        except UnsafeModelError:
            raise
        except Exception as e:  # skops' UntrustedTypesFoundException, and errors of damaged schemas
            first = (str(e).splitlines() or [type(e).__name__])[0][:300]
            if type(e).__name__ == "UntrustedTypesFoundException":
                raise UnsafeModelError(
                    f"{path}: skops refused the file ({first}); nothing from it was run", []
                ) from None
            raise IntegrityError(
                f"{path}: skops could not rebuild the model ({type(e).__name__}: {first})"
            ) from None

    def inspect(self, path: Path) -> Inspection:
        _, names = self._read(path)
        _, refused = self._audit(names, False)
        details = {"types": names}
        return Inspection(
            framework="sklearn",
            extra_metadata=details,
            globals=[n for n, _ in refused],
            executes_code=False,
        )

    def predict(self, model: Any, inputs: Any, request: PredictRequest) -> Any:
        raise ArgumentError(
            "a model loaded from .skops is a scikit-learn estimator: ms.predict runs it"
        )


__all__ = ["SkopsBackend"]
