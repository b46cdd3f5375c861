"""Subprocess workers for the store reliability tests (run as a script)."""

from __future__ import annotations

import sys


def state(value: float, n: int) -> dict[str, object]:
    import torch

    return {"w": torch.full((n,), float(value)), "b": torch.arange(8, dtype=torch.int64)}


def main() -> None:
    import modelstore as ms

    kind, target = sys.argv[1], sys.argv[2]
    if kind == "writer":  # writer ROOT NAME WRITER COUNT: COUNT saves of one name
        name, writer, count = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        store = ms.Store(target)
        for i in range(count):
            value = writer * 1000 + i
            v = store.save(state(value, 64), name, metadata={"value": value})
            print(v, flush=True)
    elif kind == "big-store":  # big-store ROOT NAME VALUE: one large save, killed by the test
        name, value = sys.argv[3], float(sys.argv[4])
        sd = state(value, 12_000_000)  # 48 MB
        store = ms.Store(target)
        print("ready", flush=True)
        store.save(sd, name, metadata={"value": value})
        print("done", flush=True)
    elif kind == "big-uri":  # big-uri URI VALUE: one large save over an existing object
        value = float(sys.argv[3])
        sd = state(value, 12_000_000)
        print("ready", flush=True)
        ms.save(sd, target, metadata={"value": value})
        print("done", flush=True)


if __name__ == "__main__":
    main()
