"""One pass for an uncompressed joblib save: write, hash and describe what was written.

(The save runs :mod:`.fastdump`, the same format written by the C pickler, first; this
module's pickler writes what that one cannot, and its file object and record are shared.)

``joblib.dump`` pickles with joblib's pure-Python ``NumpyPickler``; this module runs that same
pickler (the bytes are identical to ``joblib.dump``'s) through a file that computes the
payload checksum (xxh3-128) and the whole file's sha256 as the bytes go by, and records what
``inspect`` would read back from the stream: the globals it names, the arrays joblib stores
raw (with the dotted path the static walker gives them) and the top-level object's state.
``ms.save`` then needs no re-read for the checksum and no static re-scan of its own file.

Anything this recorder cannot describe exactly as the static scan would (an object-dtype or
structured array, a pickle protocol below 4, a joblib without the pieces used here) makes
:func:`dump` return ``None`` for the description; the save then inspects the file as before.
The trust decision is not made here: a load of the file is gated as any other.
"""

from __future__ import annotations

import hashlib
import pickle
import queue
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...storage.hashing import PendingDigest, format_checksum, new_checksum
from .record import Recorded, _global_name, array_info, reduced_name

#: bytes gathered before one write + hash (pickle opcodes arrive a few bytes at a time)
_BUFFER = 1 << 20
#: bytes waiting for the sha256 thread before the writer waits for it (memory, not speed)
_IN_FLIGHT = 256 << 20
#: descriptions kept for ``inspect`` to pick up right after the save (consumed once)
_KEEP = 64


class HashingFile:
    """A write-only file object that checksums every byte it writes (xxh3, at memory speed)
    and hands the same bytes to a second thread for the whole file's sha256 (~1.4 GB/s;
    hashlib releases the GIL), so the hash costs the writer almost nothing. Use as a
    context manager; :meth:`sha256` is ready after it exits."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.xxh = new_checksum()
        self.size = 0
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._queued = 0  # bytes handed to the hashing thread and not hashed yet
        self._room = threading.Condition()
        self._thread = threading.Thread(target=self._hash, name="modelstore-sha256", daemon=True)

    def __enter__(self) -> HashingFile:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._queue.put(None)
            if exc[0] is not None:
                self._thread.join()  # else the hash finishes off the save's path: sha256()

    def _hash(self) -> None:
        while (data := self._queue.get()) is not None:
            self._sha.update(data)
            with self._room:
                self._queued -= len(data)
                self._room.notify()

    def sha256(self) -> PendingDigest:
        """The whole file's sha256, ready once the hashing thread has taken every byte."""

        def wait() -> str:
            self._thread.join()
            return self._sha.hexdigest()

        return PendingDigest(wait)

    def write(self, data: Any) -> int:
        n = data.nbytes if type(data) is memoryview else len(data)
        if n < 65536:
            self._buf += data
            if len(self._buf) >= _BUFFER:
                self.flush()
        else:
            self.flush()
            self._put(data)
        return n

    def _put(self, data: Any) -> None:
        if type(data) is not bytes:
            # a view of a caller's buffer (a pickled bytearray, a frame): the hashing thread
            # may read it after the save returns, so it gets the bytes as written now
            data = bytes(data)
        self.xxh.update(data)
        with self._room:  # at most _IN_FLIGHT bytes wait for the hashing thread
            while self._queued > _IN_FLIGHT and self._thread.is_alive():
                self._room.wait(0.1)
            self._queued += len(data)
        self._queue.put(data)
        self.raw.write(data)
        self.size += len(data)

    def flush(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self._put(data)

    def tell(self) -> int:
        return self.size + len(self._buf)


_DICT, _SEQ, _REDUCE = 0, 1, 2


def _index(entry: list[Any]) -> dict[int, tuple[bool, Any]]:
    """id(child) -> (walked, key) for one container on the stack (the first place wins)."""
    kind, container = entry[0], entry[1]
    out: dict[int, tuple[bool, Any]] = {}
    if kind == _DICT:
        pairs: Any = container.items()
    elif kind == _SEQ:
        pairs = enumerate(container)
    else:
        _, _, state, listitems, dictitems = entry[:5]
        if state is not None:
            out[id(state)] = (True, _HERE)
        pairs = [*enumerate(listitems or ()), *(dictitems or ())]
    for k, v in pairs:
        if id(v) not in out:
            out[id(v)] = (type(k) in (str, int, bool), k)  # a subclass is a call in the stream
    return out


_HERE = object()


def _pickler_class() -> Any:
    """joblib's NumpyPickler, recording as it goes. Containers being written are kept on a
    stack; only when an array comes is its path worked out, by finding each child in its
    container (so the many small values cost nothing)."""
    from joblib.numpy_pickle import NumpyPickler

    class RecordingPickler(NumpyPickler):  # type: ignore[misc]
        dispatch = NumpyPickler.dispatch.copy()

        def __init__(self, fp: Any, protocol: int) -> None:
            super().__init__(fp, protocol=protocol)
            self.rec = Recorded()
            #: [kind, container, ..., index of its children (built when an array needs it)]
            self._stack: list[list[Any]] = []
            self._root: Any = None

        def dump(self, obj: Any) -> None:
            self._root = obj
            super().dump(obj)

        def _path(self, array: Any) -> list[Any] | None:
            keys: list[Any] = []
            child = array
            for entry in reversed(self._stack):
                if entry[-1] is None:
                    entry[-1] = _index(entry)
                walked, key = entry[-1].get(id(child), (False, None))
                if not walked:
                    return None  # a dict key, a call's argument: the walker does not go there
                if key is not _HERE:
                    keys.append(key)
                child = entry[1]
            return keys[::-1]

        def _create_array_wrapper(self, array: Any) -> Any:
            keys = self._path(array)
            if keys is None:
                pass
            elif array.dtype.hasobject:  # pickled inline by a pickler this one cannot see
                self.rec.exact = False
            else:
                self.rec.arrays.append(array_info(array, keys))
            return super()._create_array_wrapper(array)

        def save_dict(self, obj: Any) -> None:
            self._stack.append([_DICT, obj, None])
            try:
                NumpyPickler.save_dict(self, obj)
            finally:
                self._stack.pop()

        def save_list(self, obj: Any) -> None:
            self._stack.append([_SEQ, obj, None])
            try:
                NumpyPickler.save_list(self, obj)
            finally:
                self._stack.pop()

        def save_tuple(self, obj: Any) -> None:
            self._stack.append([_SEQ, obj, None])
            try:
                NumpyPickler.save_tuple(self, obj)
            finally:
                self._stack.pop()

        dispatch[dict] = save_dict
        dispatch[list] = save_list
        dispatch[tuple] = save_tuple

        def save_global(self, obj: Any, name: str | None = None) -> None:
            self.rec.globals[_global_name(obj, name)] = None
            super().save_global(obj, name)

        def save_reduce(
            self,
            func: Any,
            args: Any,
            state: Any = None,
            listitems: Any = None,
            dictitems: Any = None,
            *rest: Any,
            obj: Any = None,
        ) -> None:
            if state is not None and (listitems is not None or dictitems is not None):
                self.rec.exact = False  # written items-then-state, walked state-then-items
            if rest and rest[0] is not None:  # the state goes to a setter call, unscanned
                self.rec.exact = False
            if listitems is not None:
                listitems = list(listitems)
            if dictitems is not None:
                dictitems = list(dictitems)
            if obj is not None:
                name = self._name(func, args)
                self.rec.objects[id(obj)] = (name, state)
                if obj is self._root:
                    self.rec.root = (name, state)
            self._stack.append([_REDUCE, obj, state, listitems, dictitems, None])
            try:
                super().save_reduce(
                    func,
                    args,
                    state,
                    None if listitems is None else iter(listitems),
                    None if dictitems is None else iter(dictitems),
                    *rest,
                    obj=obj,
                )
            finally:
                self._stack.pop()

        _name = staticmethod(reduced_name)

    return RecordingPickler


_ARRAYS: tuple[type, ...] = ()


def _array_types() -> tuple[type, ...]:
    global _ARRAYS
    if not _ARRAYS:
        import numpy as np

        _ARRAYS = (np.ndarray, np.matrix, np.memmap)
    return _ARRAYS


@dataclass
class Dumped:
    """What :func:`dump` wrote: checksum, sha256, size, and the description (None: scan)."""

    checksum: str
    sha256: PendingDigest
    size: int
    recorded: Recorded | None


def dump(obj: Any, path: Path, protocol: int | None) -> Dumped | None:
    """``joblib.dump(obj, path, protocol=protocol)`` (uncompressed) hashed and described in
    the same pass; None when this joblib lacks the pickler used here (then call joblib.dump)."""
    if protocol is not None and protocol < 4:
        return None
    try:
        cls = _pickler_class()
    except (ImportError, AttributeError):
        return None
    with open(path, "wb") as raw, HashingFile(raw) as out:
        pickler = cls(out, protocol=protocol if protocol is not None else pickle.DEFAULT_PROTOCOL)
        pickler.dump(obj)
    rec: Recorded = pickler.rec
    return Dumped(format_checksum(out.xxh), out.sha256(), out.size, rec if rec.exact else None)


# -- handing the description to the inspect that follows the save ----------------------------

_LOCK = threading.Lock()
_WRITTEN: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def _key(path: Path, st: Any) -> tuple[Any, ...]:
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def remember(target: Path, tmp: Path, inspection: Any) -> None:
    """Keep ``inspection`` for ``target`` once ``tmp`` (same inode) is renamed over it."""
    key = _key(target, tmp.stat())
    with _LOCK:
        _WRITTEN[key] = inspection
        while len(_WRITTEN) > _KEEP:
            _WRITTEN.popitem(last=False)


def take(path: Path) -> Any:
    """The description this process recorded while writing ``path`` (once), else None."""
    try:
        key = _key(path, path.stat())
    except OSError:
        return None
    with _LOCK:
        return _WRITTEN.pop(key, None)
