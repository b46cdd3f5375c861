"""The tutorials' RandomForest on iris: save with joblib through modelstore, load, predict.

python examples/sklearn_iris.py [--out DIR]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

import modelstore as ms


def main(out: Path) -> None:
    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.3, random_state=0, stratify=iris.target
    )
    forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(x_train, y_train)
    print(f"test accuracy: {forest.score(x_test, y_test):.3f}")

    path = out / "iris_forest.joblib"
    info = ms.save(forest, path, labels=list(iris.target_names), compress=3)
    print(f"saved {path.name}: {info.size_bytes:,} bytes; metadata in {path.name}.modelstore.json")

    # inspect reads the pickle's opcodes: class, parameters, classes - nothing is unpickled
    seen = ms.inspect(path)
    print(
        f"inspect: {seen.metadata['estimator']}, n_estimators={seen.metadata['params']['n_estimators']}, "
        f"{seen.metadata['n_features_in_']} features, executes code: {seen.executes_code}"
    )
    print(f"scan: {ms.scan(path).verdict}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = ms.load(path)  # scanned first; unpickled through an allow-listed unpickler
    print(f"load warned: {caught[0].category.__name__}")

    sample = x_test[:3]
    print("labels:", ms.predict(loaded, sample, output="label"))
    print("probabilities:", np.round(ms.predict(loaded, sample, output="proba"), 2).tolist())
    same = np.array_equal(ms.predict(loaded, x_test), forest.predict(x_test))
    print(f"reloaded forest predicts the same: {same}")
    assert same


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)
