"""Subprocess programs for the reliability tests: writers that save in a loop (to be killed),
and a fuzz worker that answers load/inspect/scan for files it is sent.

Each writer saves version i of a tiny model whose payload encodes i (every weight equals i,
or the estimator's constant is i) and whose metadata says {"i": i}, so a reader can check
that payload and metadata belong together. It prints i after each completed save.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
FAMILIES = {"safetensors": ".safetensors", "torch": ".pt", "sklearn": ".joblib", "keras": ".keras"}


def make(family: str, i: int) -> Any:
    """Version ``i`` of the family's model (payload encodes i)."""
    if family in ("safetensors", "torch"):
        import torch

        layer = torch.nn.Linear(256, 256)
        with torch.no_grad():
            layer.weight.fill_(float(i))
            layer.bias.fill_(float(i))
        return layer
    if family == "sklearn":
        import numpy as np
        from sklearn.dummy import DummyRegressor

        est = DummyRegressor(strategy="constant", constant=float(i)).fit(
            np.zeros((2, 1)), [0.0, 0.0]
        )
        est.padding_ = np.full(65536, float(i))  # enough bytes that a write takes a moment
        return est
    import keras

    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(64)])
    for w in model.weights:
        w.assign(w.numpy() * 0 + float(i))
    return model


def version_of(family: str, obj: Any) -> float:
    """The i a loaded object encodes."""
    if family in ("safetensors", "torch"):
        return float(obj["weight"].reshape(-1)[0])
    if family == "sklearn":
        return float(obj.constant[0][0] if hasattr(obj.constant, "__len__") else obj.constant)
    return float(obj.weights[0].numpy().reshape(-1)[0])


def _line(text: str) -> None:
    """One line in one write: with PYTHONUNBUFFERED set, print() writes the value and the
    newline separately, and a writer killed between the two left "36" without its newline,
    so the forker's "exit 9" joined it and the reader never saw the exit."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def writer(family: str, path: str, start: int, writer_id: int = 0, count: int = 0) -> None:
    import modelstore as ms

    i = start
    while True:
        ms.save(make(family, i), path, metadata={"i": i, "writer": writer_id})
        _line(str(i))
        i += 1
        if count and i - start >= count:
            return


def forker(family: str) -> None:
    """Imports the family's framework and modelstore once, then for each ``writer`` command
    line read on stdin (a JSON list: family, path, start) forks a writer: the child prints ``pid N`` and then what ``writer``
    prints; once the child is gone (killed or finished) this prints ``exit STATUS``. The
    children are what the crash test kills, at the same moments a fresh writer would be."""
    import modelstore as ms  # noqa: F401 - imported once here, inherited by every child

    if family in ("safetensors", "torch"):
        import torch  # noqa: F401
    elif family == "sklearn":
        import sklearn.dummy  # noqa: F401
    else:
        import keras  # noqa: F401
    import json

    for line in sys.stdin:
        args = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _line(f"pid {os.getpid()}")
                writer(args[0], args[1], *map(int, args[2:]))
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        _line(f"exit {status}")


def fuzz_worker() -> None:
    """Reads file paths on stdin; for each, runs load/inspect/scan and prints one line:
    'ok' or the names of exceptions that are not ModelstoreErrors."""
    import resource

    import modelstore as ms

    # a declared size must never turn into an allocation: cap the address space
    cap = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    warnings.simplefilter("ignore")
    for line in sys.stdin:
        path = line.strip()
        foreign = []
        for call in (lambda: ms.load(path), lambda: ms.inspect(path), lambda: ms.scan(path)):
            try:
                call()
            except ms.ModelstoreError as e:
                if "too large" in str(e):
                    foreign.append("Allocation")
            except Exception as e:  # noqa: BLE001 - this is what the test looks for
                foreign.append(f"{type(e).__module__}.{type(e).__name__}")
        print("ok" if not foreign else " ".join(foreign), flush=True)


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "writer":
        writer(
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            int(sys.argv[5]) if len(sys.argv) > 5 else 0,
            int(sys.argv[6]) if len(sys.argv) > 6 else 0,
        )
    elif role == "forker":
        forker(sys.argv[2])
    else:
        fuzz_worker()
