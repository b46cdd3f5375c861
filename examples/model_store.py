"""A versioned model store: train two digits models, keep both, point "prod" at the better
one, load by alias; then a sharded float16 checkpoint and a URI (memory://, s3:// alike).

    python examples/model_store.py [--out DIR]

The store lives in DIR/store here; by default ms.Store() uses $MODELSTORE_HOME or
~/.modelstore, and ms.Store("s3://bucket/prefix") puts it in object storage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from quickstart import LABELS, Net, accuracy, digits, train

import modelstore as ms


def main(out: Path) -> None:
    x_train, x_test, y_train, y_test = digits()
    store = ms.Store(out / "store")

    # two training runs, two versions of one name
    for hidden, epochs in ((16, 5), (64, 40)):
        torch.manual_seed(0)
        net = Net(hidden=hidden)
        train(net, x_train, y_train, epochs=epochs)
        acc = accuracy(net.eval(), x_test, y_test)
        v = store.save(
            net,
            "digits-mlp",
            config={"hidden": hidden},
            labels=LABELS,
            metadata={"accuracy": round(acc, 4), "epochs": epochs},
            tags={"data": "digits"},
        )
        print(f"saved digits-mlp@{v}: hidden={hidden}, accuracy {acc:.3f}")

    best = max(store.versions("digits-mlp"), key=lambda v: v.metadata["accuracy"])
    store.alias("digits-mlp", best.version, "prod")
    for v in store.versions("digits-mlp"):
        print(
            f"  version {v.version}: {v.size_bytes:,} bytes, accuracy {v.metadata['accuracy']}, "
            f"aliases {v.aliases}, sha256 {v.sha256[:12]}..."
        )

    prod = store.load(
        "digits-mlp@prod", model=Net
    )  # builds Net(hidden=...) from the recorded config
    print(f"loaded digits-mlp@prod: accuracy {accuracy(prod, x_test, y_test):.3f}")

    # big models: shards of at most max_shard_size, floats cast to float16 (half the bytes)
    hidden = prod.fc1.out_features
    ms.save(prod, out / "sharded", max_shard_size="8KB", dtype="float16", config={"hidden": hidden})
    files = sorted(p.name for p in (out / "sharded").iterdir())
    print(f"sharded float16 checkpoint: {files}")
    again = ms.load(out / "sharded", model=Net)
    same = np.array_equal(
        ms.predict(again, x_test, output="label"), ms.predict(prod, x_test, output="label")
    )
    print(
        f"float16 shards predict the same labels: {same}; module dtype {next(again.parameters()).dtype}"
    )

    # any fsspec URI works the same way (s3:// needs: pip install "modelstore-safe[s3]")
    info = ms.save(
        prod, "memory://team/digits.safetensors", config={"hidden": hidden}, labels=LABELS
    )
    print(f"saved {info.path}: {ms.inspect(info.path).num_params:,} parameters")


if __name__ == "__main__":
    from _runner import run

    run(main, __doc__)
