"""The tutorials' Keras flow on digits: Sequential Dense model, full .h5, weights only, reload.

Saves the full model as legacy .h5 (and as .keras), saves weights only, rebuilds the model
and loads the weights into it, loads the full model, and predicts with each.
    python examples/keras_digits.py [--out DIR]
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import modelstore as ms  # noqa: E402

LABELS = [str(d) for d in range(10)]


def build() -> keras.Model:
    model = keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.2),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def main(out: Path) -> None:
    keras.utils.set_random_seed(0)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    model = build()
    model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
    print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    ms.save(model, out / "digits.h5", labels=LABELS)  # full model, legacy HDF5
    ms.save(model, out / "digits.keras", labels=LABELS)  # full model, Keras 3 archive
    ms.save(model, out / "digits.weights.h5")  # weights only

    info = ms.inspect(out / "digits.keras")  # no TensorFlow needed for this
    for layer in info.metadata["layers"]:
        print(
            f"  {layer['name']:<12} {layer['class']:<11} {layer.get('output_shape', '')!s:<11} {layer['params']:>6,}"
        )
    print(f"  total params {info.num_params:,}")

    # Keras notes that a fresh model's optimizer state is not restored from weights-only files
    warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
    rebuilt = ms.load(out / "digits.weights.h5", model=build())  # weights into a fresh model
    full = ms.load(out / "digits.h5")  # safe_mode=True
    again = ms.load(out / "digits.keras")

    sample = x_test[:5]
    print(
        "labels:", ms.predict(full, sample, output="label"), "true:", [str(v) for v in y_test[:5]]
    )
    reference = ms.predict(model, x_test)
    for name, m in (("weights.h5", rebuilt), ("h5", full), ("keras", again)):
        same = np.allclose(ms.predict(m, x_test), reference, atol=1e-6)
        print(f"{name:>10}: same predictions as the trained model: {same}")
        assert same


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)
