"""Dict keys and set members a pickle may build: those whose hashes an attacker cannot
collide (part of :mod:`.pickle_stream`'s rules, shared by the scanner and the loader).

Thousands of keys with one hash make a dict O(n^2) to build: a small file becomes a hang.
Strings and bytes hash with a per-process random key; small ints and finite floats have
distinct hashes for distinct values; big ints, Decimals and Fractions hash modulo a known
prime, and tuples of ints combine hashes the file chooses.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import UnsafeModelError

_HASH_BOUND = (1 << 61) - 1  # Python's int hash is the value modulo this prime


def safe_key(k: Any) -> bool:
    """Whether ``k`` may be a dict key or set member: types with randomised hashes (str,
    bytes), small ints and finite floats (distinct values, distinct hashes), and tuples of
    strings. Big ints, Decimals and Fractions hash modulo a known prime, and tuples of ints
    combine attacker-chosen hashes: thousands of colliding keys make a small file a hang."""
    t = type(k)
    if t is str or t is bytes or k is None or t is bool:
        return True
    if t is int:
        return bool(-_HASH_BOUND < k < _HASH_BOUND)
    if t is float:
        return bool(k == k and abs(k) < 1e300)
    if t is tuple:
        return all(type(x) is str or type(x) is bytes for x in k) and len(k) <= 64
    np = sys.modules.get("numpy")  # only numpy's own scalar types: never call what the stream built
    if np is not None and isinstance(k, np.generic) and t.__module__ == "numpy":
        return safe_key(k.item())  # numpy scalars hash like their Python value
    return False


#: Key types that are always safe (randomised or trivial hashes, whatever the value).
PLAIN_KEYS = frozenset({str, bytes, bool, type(None)})


def plain_keys(keys: list[Any]) -> bool:
    """Whether every key is of a :data:`PLAIN_KEYS` type, tested in C (a vocabulary of a
    million strings costs one pass of ``map``, not a million Python calls)."""
    return set(map(type, keys)) <= PLAIN_KEYS


def check_keys(keys: Any, where: str) -> None:
    keys = list(keys)
    if plain_keys(keys):
        return
    for k in keys:
        if not safe_key(k):
            raise UnsafeModelError(
                f"{where}: a dict key or set member of type {type(k).__name__} whose hash the file "
                f"controls (crafted collisions make loading hang); nothing from the file was executed",
                [],
            )


#: Callables that iterate what they are given (the hashing ones below too).
ITERATING = frozenset(
    {
        "collections.Counter",
        "collections.OrderedDict",
        "builtins.set",
        "builtins.frozenset",
        "builtins.dict",
        "builtins.bytearray",
        "builtins.list",
        "builtins.tuple",
        "torch.Size",
    }
)
#: Containers that hash what they are built from: their items, or the keys of their pairs.
HASHING = {
    "collections.Counter": "items",
    "builtins.set": "items",
    "builtins.frozenset": "items",
    "collections.OrderedDict": "pairs",
    "builtins.dict": "pairs",
}
