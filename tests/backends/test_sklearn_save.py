"""scikit-learn save in one pass (issue 19): what ``ms.save`` returns is what ``inspect`` reads.

The save writes a joblib file through the C pickler (or joblib's own pickler when it cannot),
hashing and describing it as it goes; these tests hold it to the static scan of the written
file and to what ``joblib.load`` reads from ``joblib.dump``'s file, and check that loading
what was saved is still gated.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier  # noqa: E402
from sklearn.feature_extraction.text import TfidfVectorizer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.formats.sklearn import writer  # noqa: E402
from modelstore.storage.hashing import file_checksum  # noqa: E402
from modelstore.storage.sidecar import read_sidecar, sidecar_versions  # noqa: E402
from tests.backends.test_sklearn_fastdump import same  # noqa: E402
from tests.hostile import Reduce  # noqa: E402

X, Y = load_iris(return_X_y=True)
NAMES = np.array(load_iris().target_names)


def _models() -> dict[str, Any]:
    docs = ["alpha beta", "beta gamma", "gamma delta"] * 3
    return {
        "forest": RandomForestClassifier(n_estimators=4, random_state=0).fit(X, Y),
        "pipeline": make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, Y),
        "string_classes": DecisionTreeClassifier(random_state=0).fit(X, NAMES[Y]),
        "regressor": GradientBoostingRegressor(n_estimators=3, random_state=0).fit(X, Y),
        "text": make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(docs, [0, 1, 2] * 3),
    }


CASES = [(name, {}) for name in _models()] + [
    ("pipeline", {"compress": 3}),
    ("pipeline", {"protocol": 2}),
    ("pipeline", {"protocol": 5}),
]


@pytest.mark.parametrize(("name", "options"), CASES)
def test_save_returns_what_inspect_reads(tmp_path: Path, name: str, options: Any) -> None:
    model = _models()[name]
    raw = tmp_path / "raw.joblib"
    joblib.dump(model, raw, **options)
    path = tmp_path / "m.joblib"
    info = ms.save(model, path, **options)
    if "compress" in options or options.get("protocol") == 2:  # joblib's own bytes
        assert path.read_bytes() == raw.read_bytes()
    else:  # the C pickler's stream (tests/backends/test_sklearn_fastdump.py): what joblib reads
        assert same(joblib.load(path), joblib.load(raw))
    assert dataclasses.asdict(info) == dataclasses.asdict(ms.inspect(path))
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    (entry,) = sidecar_versions(read_sidecar(path))
    assert entry["checksum"] == file_checksum(path)
    assert entry["payload_size"] == path.stat().st_size
    assert info.tensors and info.globals
    assert not writer._WRITTEN  # the description was used once, by the save itself


def test_object_arrays_fall_back_to_the_scan(tmp_path: Path) -> None:
    model = LogisticRegression(max_iter=300).fit(X, Y)
    model.feature_names_in_ = np.array(list("abcd"), dtype=object)  # as a DataFrame fit leaves it
    path = tmp_path / "m.joblib"
    info = ms.save(model, path)
    assert dataclasses.asdict(info) == dataclasses.asdict(ms.inspect(path))
    assert info.metadata["feature_names_in_"] == list("abcd")


def test_the_recorded_description_is_not_reused_for_another_file(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    ms.save(_models()["forest"], path)
    other = LogisticRegression(max_iter=300).fit(X, Y)
    joblib.dump(other, path)  # replaced by another tool: inspect reads the file itself
    assert ms.inspect(path).metadata["estimator"].endswith("LogisticRegression")


def test_loading_what_was_saved_is_still_gated(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    model = copy.copy(_models()["pipeline"])
    model.hook = Reduce(os.system, f"touch {marker}")  # type: ignore[attr-defined]
    path = tmp_path / "m.joblib"
    info = ms.save(model, path)
    assert any(g.endswith(".system") for g in info.globals) and info.executes_code
    with pytest.raises(ms.UnsafeModelError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ms.load(path)
    assert not marker.exists()
    assert ms.scan(path).verdict == "unsafe"
