"""Let a native parser read hostile bytes in a child process first.

Some native model parsers (XGBoost's UBJSON reader, LightGBM's model text, the HDF5 library)
crash the whole interpreter or loop forever on damaged or crafted input: no ``except`` can
catch a segmentation fault or interrupt C code. :func:`run` hands the bytes to a short script
in an isolated child (``python -I``: nothing beside the parser is imported, no user site, no
current directory on ``sys.path``) with a time limit, and returns what the script printed, or
raises :class:`ChildFailed` saying why. Callers then work on the child's output (a canonical
re-serialisation they check themselves), never on the untouched input, so what was checked is
what this process deserialises.

Results are cached per script and input digest (bounded: 16 entries, 64 MiB in all).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import OrderedDict

#: most seconds a child may take (parsing a multi-GB model on a busy machine included)
SECONDS = 300.0
#: most bytes of data the child may allocate (RLIMIT_DATA, where the platform has it), plus
#: MEMORY_PER_BYTE per input byte: parsers size tables by what the file declares (XGBoost:
#: category bitsets up to the largest code), so a few KB could otherwise ask for any amount
MEMORY = 4 << 30
MEMORY_PER_BYTE = 32
#: cached results: at most this many, CACHE_BYTES in all (larger outputs are not kept)
CACHE_ENTRIES = 16
CACHE_BYTES = 64 << 20

_CACHE: OrderedDict[tuple[str, str], bytes | str] = OrderedDict()


class ChildFailed(Exception):
    """The child crashed, failed, or ran out of time; ``str()`` says which, in one line."""


def run(script: str, data: bytes, *, what: str, timeout: float = SECONDS) -> bytes:
    """Run ``script`` under ``python -I -c`` with ``data`` on stdin; return its stdout.

    ``what`` names the parser for messages ("XGBoost", "LightGBM"). Raises ChildFailed.
    """
    limit = MEMORY + MEMORY_PER_BYTE * len(data)
    script = (
        "try:\n import resource\n"
        f" resource.setrlimit(resource.RLIMIT_DATA, ({limit}, {limit}))\n"
        "except (ImportError, AttributeError, ValueError, OSError):\n pass\n" + script
    )
    key = (script, hashlib.sha256(data).hexdigest())
    hit = _CACHE.get(key)
    if hit is None:
        hit = _run(script, data, what, timeout)
        if len(hit) <= CACHE_BYTES:
            _CACHE[key] = hit
            while len(_CACHE) > CACHE_ENTRIES or sum(map(len, _CACHE.values())) > CACHE_BYTES:
                _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    if isinstance(hit, str):
        raise ChildFailed(hit)
    return hit


def _run(script: str, data: bytes, what: str, timeout: float) -> bytes | str:
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", script],
            input=data,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"{what} did not finish reading the model in {timeout:g} s"
    if proc.returncode == 0:
        return proc.stdout
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    last = lines[-1][:200] if lines else "no message"
    if proc.returncode < 0:
        return f"{what} crashed reading the model (signal {-proc.returncode}; {last})"
    return f"{what} cannot read the model ({last}; exit status {proc.returncode})"


__all__ = ["ChildFailed", "run", "SECONDS"]
