"""Generate modelstore/security/allowlist_sklearn.py from the installed scikit-learn.

    python tools/gen_sklearn_allowlist.py            # writes the file, prints what it found
    python tools/gen_sklearn_allowlist.py --check    # exit 1 if the file is out of date

Entries come from two sources, never from a naming pattern:

1. every estimator class (a ``BaseEstimator`` subclass) *defined* in a scikit-learn module
   (re-exports are skipped: ``sklearn.x.Thing`` is listed only where ``Thing.__module__`` is
   ``sklearn.x``), outside the modules that deal with files, downloads, tests and set-up;
2. every scikit-learn global that the pickles of the fitted zoo (tests/sklearn_zoo.py: every
   estimator ``all_estimators()`` lists, plus common pipelines) really use, at protocols 2
   and 5 and through ``joblib.dump``, classified by how the stream uses it: created empty and
   filled (``construct``), called (``call``: each needs a validator in check_sklearn.py), or
   only referred to (``value``).

Globals of other packages found in those pickles must already be in allowlist.py; any that
is not is printed (and ``--check`` fails) so a person decides.
"""

from __future__ import annotations

import argparse
import copyreg
import importlib
import io
import pickle
import pkgutil
import sys
import warnings
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "modelstore" / "security" / "allowlist_sklearn.py"

#: Modules never listed: file and network access, test helpers, build and set-up code.
DENIED = (
    "sklearn.datasets",
    "sklearn.externals",
    "sklearn.experimental",
    "sklearn.tests",
    "sklearn.utils._testing",
    "sklearn.utils._show_versions",
    "sklearn.utils.discovery",
    "sklearn.utils.parallel",
    "sklearn.utils.fixes",
    "sklearn.conftest",
    "sklearn._build_utils",
    "sklearn.__check_build",
    "sklearn.utils._joblib",
    "sklearn._config",
    "sklearn.utils._estimator_html_repr",
)
#: Score functions people pass to selectors (SelectKBest(chi2)): pure computations.
SCORE_FUNCTIONS = (
    "chi2",
    "f_classif",
    "f_regression",
    "r_regression",
    "mutual_info_classif",
    "mutual_info_regression",
)


def families() -> dict[tuple[str, str], tuple[str, str]]:
    """Classes a fitted state may hold beyond what the zoo's defaults show, by exact module and
    base class (each becomes an explicit entry): every kernel, loss, link, scorer, distance
    metric and neighbour tree a parameter can select."""
    from sklearn._loss import _loss, link, loss
    from sklearn.gaussian_process import kernels
    from sklearn.linear_model import _sgd_fast
    from sklearn.metrics import _dist_metrics, _scorer
    from sklearn.neighbors import _ball_tree, _kd_tree

    rows: dict[tuple[str, str], tuple[str, str]] = {}

    def defined(mod: object, base: type, kind: str, why: str, skip: tuple[str, ...] = ()) -> None:
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, base)
                and obj is not base
                and obj.__module__ == mod.__name__
                and name not in skip
            ):  # type: ignore[attr-defined]
                rows[(mod.__name__, name)] = (kind, why)  # type: ignore[attr-defined]

    defined(kernels, kernels.Kernel, "construct", "helper")
    defined(loss, loss.BaseLoss, "construct", "helper")
    defined(link, link.BaseLink, "construct", "helper")
    rows[(link.__name__, "Interval")] = ("construct", "helper")
    defined(_scorer, _scorer._BaseScorer, "construct", "helper")
    rows[(_scorer.__name__, "_MultimetricScorer")] = ("construct", "helper")
    defined(_loss, _loss.CyLossFunction, "call", "cython")
    for name in vars(_loss):
        if name.startswith("__pyx_unpickle_Cy"):
            rows[(_loss.__name__, name)] = ("call", "cython")
    for base in (_sgd_fast.Classification, _sgd_fast.Regression):
        defined(_sgd_fast, base, "call", "cython", skip=("Classification", "Regression"))
    for base in (_dist_metrics.DistanceMetric64, _dist_metrics.DistanceMetric32):
        defined(
            _dist_metrics, base, "value", "reference", skip=("PyFuncDistance64", "PyFuncDistance32")
        )
    for mod, cls in ((_kd_tree, "KDTree"), (_ball_tree, "BallTree")):
        rows[(mod.__name__, cls)] = ("value", "reference")
        rows[(mod.__name__, "newObj")] = ("call", "cython")
    rows[(_dist_metrics.__name__, "newObj")] = ("call", "cython")
    for fn in ("_kmeans_single_lloyd", "_kmeans_single_elkan"):
        rows[("sklearn.cluster._kmeans", fn)] = ("value", "reference")
    return rows


def _denied(module: str) -> bool:
    return any(module == d or module.startswith(d + ".") or ".tests" in module for d in DENIED)


def defined_estimators() -> set[tuple[str, str]]:
    import sklearn
    from sklearn.base import BaseEstimator

    found = set()
    for info in pkgutil.walk_packages(sklearn.__path__, "sklearn."):
        if _denied(info.name):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - optional-dependency modules
            continue
        for name, obj in vars(mod).items():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseEstimator)
                and obj.__module__ == info.name
                and obj.__qualname__ == name
            ):
                found.add((info.name, name))
    return found


class _Survey(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The stdlib's unpickler, noting how each global is used (our own trusted pickles only)."""

    def __init__(self, data: bytes, usage: dict[tuple[str, str], set[str]]) -> None:
        super().__init__(io.BytesIO(data))
        self.usage = usage
        self.names: dict[int, tuple[str, str]] = {}

    def find_class(self, module: str, name: str) -> object:
        obj = super().find_class(module, name)
        key = _mapped(module, name, self.proto)
        self.names[id(obj)] = key
        self.usage[key].add("value")
        return obj

    def load_reduce(self) -> None:
        func, args = self.stack[-2], self.stack[-1]
        key = self.names.get(id(func))
        if key is not None:
            self.usage[key].add("call")
        if (
            func in (copyreg._reconstructor, copyreg.__newobj__)
            and args
            and id(args[0]) in self.names
        ):
            self.usage[self.names[id(args[0])]].add("construct")
        super().load_reduce()

    def load_newobj(self) -> None:
        key = self.names.get(id(self.stack[-2]))
        if key is not None:
            self.usage[key].add("construct")
        super().load_newobj()

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj


def _mapped(module: str, name: str, proto: int) -> tuple[str, str]:
    """Python 2 names as the unpickler maps them (so they match the allow-list's spelling)."""
    import _compat_pickle

    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]  # type: ignore[no-any-return]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


def survey() -> dict[tuple[str, str], set[str]]:
    import joblib
    from joblib.numpy_pickle import NumpyUnpickler

    from tests.sklearn_zoo import fitted

    usage: dict[tuple[str, str], set[str]] = defaultdict(set)
    for _name, est, _xs in fitted():
        for proto in (2, 5):
            _Survey(pickle.dumps(est, protocol=proto), usage).load()
        buf = io.BytesIO()
        joblib.dump(est, buf)

        class Joblib(NumpyUnpickler):  # type: ignore[misc]
            def find_class(self, module: str, name: str) -> object:
                usage[(module, name)].add("value")
                return super().find_class(module, name)

        buf.seek(0)
        Joblib("<zoo>", buf, ensure_native_byte_order=True).load()
    return usage


def entries() -> tuple[list[tuple[str, str, str, str]], list[str]]:
    from modelstore.security.allowlist import JOBLIB, NUMPY, PLAIN, SCIPY
    from modelstore.security.check_sklearn import call_for

    static = {(e.module, e.name) for e in (*PLAIN, *NUMPY, *JOBLIB, *SCIPY)}
    rows: dict[tuple[str, str], tuple[str, str]] = {}
    for key in defined_estimators():
        rows[key] = ("construct", "estimator")
    rows.update(families())
    for fs_mod in (
        "sklearn.feature_selection._univariate_selection",
        "sklearn.feature_selection._mutual_info",
    ):
        mod = importlib.import_module(fs_mod)
        for fn in SCORE_FUNCTIONS:
            if getattr(mod, fn, None) is not None and getattr(mod, fn).__module__ == fs_mod:
                rows[(fs_mod, fn)] = ("value", "score")
    problems = []
    for (module, name), uses in sorted(survey().items()):
        if not module.startswith("sklearn."):
            if (module, name) not in static:
                problems.append(f"{module}.{name} (used as {sorted(uses)}) is not in allowlist.py")
            continue
        if _denied(module):
            problems.append(f"{module}.{name} comes from a denied module")
            continue
        if rows.get((module, name), ("",))[0] == "call":
            continue
        if "call" in uses:
            if call_for(f"{module}:{name}") is None:
                problems.append(
                    f"{module}.{name} is called by pickles but has no validator in check_sklearn.py"
                )
                continue
            rows[(module, name)] = ("call", "cython")
        elif "construct" in uses:
            rows.setdefault((module, name), ("construct", "helper"))
        else:
            rows.setdefault((module, name), ("value", "reference"))
    out = [(m, n, kind, why) for (m, n), (kind, why) in sorted(rows.items())]
    return out, problems


REASONS = {
    "estimator": "a scikit-learn estimator class defined in this module: created empty, filled with "
    "its fitted attributes; estimators whose compiled code trusts those attributes are "
    "validated when the load ends (check_sklearn_fitted.py, check_sklearn_state.py)",
    "helper": "a helper class a fitted estimator's state holds (found in the pickles of fitted "
    "estimators); created empty and filled",
    "cython": "a compiled class or unpickle helper scikit-learn's pickles call; its arguments and the "
    "state it receives are validated (check_sklearn.py)",
    "reference": "stored by reference in a fitted estimator (a function or class as a parameter); "
    "never called while loading; a function only at the attribute where scikit-learn "
    "keeps it (check_sklearn_places.PLACES), refused anywhere else",
    "score": "a feature-scoring function passed to a selector (SelectKBest(chi2)); a pure computation",
}


def render(rows: list[tuple[str, str, str, str]]) -> str:
    import sklearn

    lines = [
        '"""scikit-learn entries of the pickle allow-list. GENERATED by tools/gen_sklearn_allowlist.py',
        f"from scikit-learn {sklearn.__version__}; do not edit by hand (the test suite checks it is current).",
        "",
        "Each entry names one object exactly (module + name as a pickle spells it); the reason for each",
        "group is in REASONS, the kinds are explained in allowlist.py.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from .allowlist import Entry",
        "",
        f'SKLEARN_VERSION = "{sklearn.__version__}"',
        "",
        "REASONS = {",
        *[f"    {k!r}: (\n        {v!r}\n    )," for k, v in REASONS.items()],
        "}",
        "",
        "_ROWS = (",
        *[f"    ({m!r}, {n!r}, {kind!r}, {why!r})," for m, n, kind, why in rows],
        ")",
        "",
        "ENTRIES: list[Entry] = [Entry(m, n, kind, REASONS[why]) for m, n, kind, why in _ROWS]",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check", action="store_true", help="exit 1 if the checked-in file is out of date"
    )
    args = ap.parse_args()
    rows, problems = entries()
    text = render(rows)
    for p in problems:
        print("PROBLEM:", p)
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        stale = current != text
        print(f"{len(rows)} entries; file {'is out of date' if stale else 'is current'}")
        return 1 if stale or problems else 0
    OUT.write_text(text)
    kinds = defaultdict(int)
    for row in rows:
        kinds[row[2]] += 1
    print(f"wrote {OUT.relative_to(ROOT)}: {len(rows)} entries {dict(kinds)}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
