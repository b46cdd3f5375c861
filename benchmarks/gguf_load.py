"""GGUF: modelstore's checked reader against the ``gguf`` package's own ``GGUFReader``, in the
same run, interleaved.

A file written by ``gguf.GGUFWriter``: a vocabulary of V tokens with scores, types and merges
(the metadata that dominates real headers) and float16 tensors of about ``--mb`` MiB.

* ms.inspect vs ``GGUFReader(path)`` (which parses the header and maps the data)
* ms.load (every tensor copied into numpy) vs ``GGUFReader`` + ``np.array(t.data)`` for each
  tensor (the same arrays, copied out of the map)

    python benchmarks/gguf_load.py [--mb 200] [--vocab 150000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf  # noqa: E402
import numpy as np  # noqa: E402
from _timing import fmt_s, interleaved, table  # noqa: E402

import modelstore as ms  # noqa: E402


def write(path: Path, mb: int, vocab: int) -> None:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_token_list([f"tok{i}\u0120x" for i in range(vocab)])
    w.add_token_scores([float(i) for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges([f"a{i} b{i}" for i in range(vocab)])
    w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    n = max(1, mb // 4)  # 4 MiB tensors
    rng = np.random.default_rng(0)
    for i in range(n):
        w.add_tensor(f"blk.{i}.weight", rng.standard_normal((1024, 2048)).astype(np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def reader_arrays(path: Path) -> dict[str, np.ndarray]:
    reader = gguf.GGUFReader(str(path))
    return {t.name: np.array(t.data) for t in reader.tensors}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--vocab", type=int, default=150_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        write(path, args.mb, args.vocab)
        size = path.stat().st_size
        t = interleaved(
            {
                "GGUFReader": lambda: gguf.GGUFReader(str(path)),
                "ms.inspect": lambda: ms.inspect(path),
                "GGUFReader + copies": lambda: reader_arrays(path),
                "ms.load": lambda: ms.load(path),
            },
            repeat=args.repeat,
        )
    print(
        f"python {platform.python_version()}, gguf {version('gguf')}, "
        f"numpy {np.__version__}; {size / 2**20:.0f} MiB file, vocabulary {args.vocab:,}; median "
        f"of {args.repeat} interleaved rounds, warm page cache; load average {os.getloadavg()[0]:.1f}"
    )
    rows = [
        [ours, fmt_s(t[ours]), raw, fmt_s(t[raw]), f"{t[ours] / t[raw]:.2f}x"]
        for ours, raw in (("ms.inspect", "GGUFReader"), ("ms.load", "GGUFReader + copies"))
    ]
    print()
    print(table("GGUF", ["modelstore", "time", "raw", "raw time", "ratio"], rows))


if __name__ == "__main__":
    main()
