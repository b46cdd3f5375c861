"""ms.predict overhead against the raw framework call, same run, interleaved.

Models: a torch MLP (the quickstart digits net), a deep torch stack (48 Linear+ReLU+Dropout
submodules: the eval/train toggles used to walk them all per call), a small Keras Dense net
and a scikit-learn logistic regression. Batch 1 and 256. Raw calls:

* torch:   ``with torch.inference_mode(): net(torch.from_numpy(x)).numpy()`` (net in eval mode)
* Keras:   ``model.predict_on_batch(x)``
* sklearn: ``clf.predict(x)``

Goal (issue 19): ms.predict <= raw + 10 µs, or <= 1.05x raw, for every framework at batch 1 and 256.

A Keras call takes about a millisecond and varies by 10-15% from one round to the next on its
own, so the difference of two medians cannot resolve 10 µs. So the script also times
modelstore's own code alone (the column "own code µs"): for Keras, ``ms.predict`` with the
model's ``predict_on_batch`` replaced, on that one instance, by a function returning the
answer it gave; for torch, a module holding the model's first parameter whose ``forward``
returns the model's answer, called raw and through ``ms.predict``. The stub's own time is
subtracted: what is left is the cost ``ms.predict`` adds to the framework's call.

    python benchmarks/predict_overhead.py [--repeat 7] [--number 300] [--only torch,keras,sklearn]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _timing import interleaved, table  # noqa: E402

import modelstore as ms  # noqa: E402

GOAL_US = 10.0
GOAL_RATIO = 1.05


def torch_cases() -> list[tuple[str, object, object, int]]:
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from quickstart import Net

    torch.manual_seed(0)
    deep = nn.Sequential(
        *[m for _ in range(16) for m in (nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.1))]
    )
    out = []
    for name, net in (
        ("torch MLP 64-32-10", Net(hidden=32).eval()),
        ("torch 48-module stack", deep.eval()),
    ):

        def raw(x: np.ndarray, net: object = net) -> object:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()  # type: ignore[operator]

        out.append((name, net, raw, 64))
    return out


def keras_cases() -> list[tuple[str, object, object, int]]:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)]
    )
    return [("Keras Dense 64-32-10", model, lambda x: model.predict_on_batch(x), 64)]


def sklearn_cases() -> list[tuple[str, object, object, int]]:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = LogisticRegression(max_iter=200).fit(x / 16.0, y)
    return [("sklearn LogisticRegression", clf, lambda x: clf.predict(x), 64)]


def own_code(fam: str, model: object, x: np.ndarray, repeat: int, number: int) -> float | None:
    """Microseconds ``ms.predict`` spends around the framework's call (None: not measured).

    Keras: the model's ``predict_on_batch`` replaced on this instance by a function returning
    the answer it gave. torch: a module with the model's first parameter whose ``forward``
    returns the model's answer, called raw and through ``ms.predict``. Each stub's own time is
    subtracted: what is left is modelstore's code alone."""
    if fam == "keras":
        answer = model.predict_on_batch(x)  # type: ignore[attr-defined]

        def stub(batch: object, answer: object = answer) -> object:
            return answer

        model.predict_on_batch = stub  # type: ignore[attr-defined]
        methods = {"stub": lambda: stub(x), "ms": lambda: ms.predict(model, x)}
    elif fam == "torch":
        import torch

        with torch.inference_mode():
            answer = model(torch.from_numpy(x))  # type: ignore[operator]

        class Answer(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.first = next(model.parameters())  # type: ignore[attr-defined]

            def forward(self, batch: torch.Tensor) -> torch.Tensor:
                return answer

        net = Answer().eval()

        def raw() -> object:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()

        methods = {"stub": raw, "ms": lambda: ms.predict(net, x)}
    else:
        return None
    try:
        t = interleaved(methods, repeat=repeat, number=number * 10, warmup=5)
    finally:
        if fam == "keras":
            del model.predict_on_batch  # type: ignore[attr-defined]
    return (t["ms"] - t["stub"]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=300)
    parser.add_argument("--only", default="torch,keras,sklearn")
    args = parser.parse_args()
    builders = {"torch": torch_cases, "keras": keras_cases, "sklearn": sklearn_cases}
    rows = []
    rng = np.random.default_rng(0)
    for fam in args.only.split(","):
        for name, model, raw, width in builders[fam]():
            for batch in (1, 256):
                x = rng.random((batch, width), dtype=np.float32)
                np.testing.assert_allclose(
                    np.asarray(ms.predict(model, x)), np.asarray(raw(x)), rtol=1e-4, atol=1e-5
                )
                number = args.number if batch == 1 else max(args.number // 4, 20)
                if fam == "keras":
                    number = max(number // 3, 20)
                t = interleaved(
                    {"raw": lambda: raw(x), "ms": lambda: ms.predict(model, x)},
                    repeat=args.repeat,
                    number=number,
                    warmup=5,
                )
                over = (t["ms"] - t["raw"]) * 1e6
                own = own_code(fam, model, x, args.repeat, args.number)
                ok = over <= GOAL_US or t["ms"] / t["raw"] <= GOAL_RATIO
                rows.append(
                    [
                        name,
                        str(batch),
                        f"{t['raw'] * 1e6:.1f}",
                        f"{t['ms'] * 1e6:.1f}",
                        f"{over:+.1f}",
                        f"{t['ms'] / t['raw']:.2f}x",
                        "MET" if ok else "not met",
                        "" if own is None else f"{own:.1f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs; µs per call, median of "
        f"{args.repeat} interleaved rounds"
    )
    print()
    print(
        table(
            "ms.predict vs the raw call",
            [
                "model",
                "batch",
                "raw µs",
                "ms.predict µs",
                "overhead µs",
                "ratio",
                "goal",
                "own code µs",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
