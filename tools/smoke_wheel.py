"""Smoke test of an installed wheel, run by .ci/run in a fresh venv outside the checkout.

    VENV/bin/python tools/smoke_wheel.py

Checks that modelstore is imported from the venv (not the checkout), that the distribution's
version is the package's, that importing it stays lean, and one save/load/predict round trip of
a tiny scikit-learn model through the restricted unpickler (the venv has the ``sklearn`` extra).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from importlib.metadata import version
from pathlib import Path

DIST_NAME = "modelstore-safe"


def main() -> int:
    prefix = Path(sys.prefix).resolve()
    lean = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, modelstore; print(sorted({'numpy', 'sklearn', 'torch'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert lean == "[]", f"import modelstore imported {lean}"

    import modelstore as ms

    where = Path(ms.__file__).resolve()
    assert prefix in where.parents, (
        f"modelstore imported from {where}, not from the venv at {prefix}"
    )
    assert version(DIST_NAME) == ms.__version__, (version(DIST_NAME), ms.__version__)
    assert (where.parent / "py.typed").is_file(), "py.typed is not installed"

    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "iris.joblib"
        info = ms.save(clf, path, labels=["setosa", "versicolor", "virginica"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = ms.load(path)  # a pickle, read through the allow-list: it says so
        assert [w.category for w in caught] == [ms.PickleWarning], [str(w.message) for w in caught]
        assert ms.scan(path).verdict == "safe", ms.scan(path)
        assert np.array_equal(loaded.predict(X), clf.predict(X))
        labels = ms.predict(loaded, X[:3], output="label")
    print(
        f"ok: {DIST_NAME} {ms.__version__} from {where.parent}; saved {info.format}, "
        f"loaded and predicted {list(labels)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
