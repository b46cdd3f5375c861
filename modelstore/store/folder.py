"""The store's folder: paths, listings, bounded JSON entries and exclusive version claims,
on a local folder (through the confinement checks) or any fsspec filesystem."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from typing import Any

from ..errors import ArgumentError, FormatError, ModelNotFoundError, StorageError
from ..security.confine import (
    confine,
    read_confined,
    replace_file,
    writable,
)
from ..security.jsonsafe import dumps, loads
from ..storage import remote as _remote
from .records import ModelVersion, _now, _number, _size, _suffix_for, _tags, _text, default_root  # noqa: F401

STORE_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_WIDTH = 6
_RESERVED = {"latest"}
#: A manifest or alias holds metadata: far below this even with large user metadata.
_MAX_JSON = 64 << 20
#: What to do about a store entry the confinement check refuses.
_FIX = "Remove it from the store folder (someone wrote a link or special file there)"


class _Folder:
    """Low-level access to a store's root, shared by :class:`~modelstore.store.Store`."""

    _root: str
    _uri_prefix: str
    _fs: Any
    _local: bool
    _options: dict[str, Any] | None
    root: str

    def _p(self, *parts: str) -> str:
        return _remote.join(self._root, *parts)

    def _public(self, path: str) -> str:
        """A path inside the filesystem as the user addresses it (URI for remote roots)."""
        rel = path[len(self._root) :].lstrip("/")
        return _remote.join(self._uri_prefix, rel) if rel else self._uri_prefix

    @staticmethod
    def _check_name(name: Any, what: str = "model name") -> str:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ArgumentError(
                f"{name!r} is not a valid {what}: use letters, digits, '.', '_' "
                f"and '-', starting with a letter or digit (at most 128)"
            )
        return name

    def _vdir(self, name: str, version: int) -> str:
        return self._p(name, "versions", f"{version:0{_WIDTH}d}")

    def _fresh(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self._fs.invalidate_cache(path)

    def _rel(self, path: str) -> str:
        """``path`` (inside the filesystem) relative to the store's root."""
        return path[len(self._root) :].lstrip("/")

    def _ls(self, path: str) -> list[str]:
        self._fresh(path)
        if self._local and self._rel(path):  # a folder linked out of the store is never listed
            try:
                confine(
                    self._root,
                    self._rel(path),
                    what="the store folder",
                    source=self.root,
                    kind="dir",
                    todo=_FIX,
                )
            except ModelNotFoundError:
                return []
        if self._local:  # os.listdir: fsspec's local ls costs ~7 µs per entry (a store's latest lists every version)
            try:
                return os.listdir(path)
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as e:
                with _remote.storage_errors(self._public(path), "list"):
                    raise e from None
        try:
            with _remote.storage_errors(self._public(path), "list"):
                return [_remote.basename(p) for p in self._fs.ls(path, detail=False)]
        except ModelNotFoundError:
            return []

    def _read_json(self, path: str) -> dict[str, Any] | None:
        """A manifest or alias: confined to the store (locally: no link leading out, no
        hard link, no FIFO; opened without following links) and read with the bounded JSON
        reader. None if it does not exist."""
        self._fresh(path)
        try:
            if self._local:
                raw = read_confined(
                    self._root,
                    self._rel(path),
                    what="the store entry",
                    source=self.root,
                    max_bytes=_MAX_JSON,
                    todo=_FIX,
                )
            else:
                with _remote.storage_errors(self._public(path), "read"):
                    raw = self._fs.cat_file(path)
        except ModelNotFoundError:
            return None
        data = loads(
            raw, where=f"{self._public(path)} (a damaged store entry)", max_bytes=_MAX_JSON
        )
        if not isinstance(data, dict):
            raise FormatError(
                f"{self._public(path)}: must hold a JSON object; the store entry is damaged"
            )
        return data

    @staticmethod
    def _check_json(data: Any, where: str) -> str:
        try:  # what we write must read back through the bounded reader
            return dumps(data, indent=2, sort_keys=True) + "\n"
        except (TypeError, ValueError) as e:
            raise ArgumentError(
                f"{where}: cannot be stored as JSON ({e}); pass numbers, strings, "
                f"lists and dicts (no NaN or infinity)"
            ) from None

    def _write_json(self, path: str, data: dict[str, Any]) -> None:
        blob = self._check_json(data, self._public(path)).encode()
        if self._local:  # a rename publishes it whole; folders on the way must be the store's own
            target = writable(
                self._root, self._rel(path), what="the store entry", source=self.root, todo=_FIX
            )
            with _remote.storage_errors(self._public(path), "write"):
                replace_file(target, blob)
            return
        with _remote.storage_errors(
            self._public(path), "write"
        ):  # published once the upload completes
            self._fs.pipe_file(path, blob)

    # -- versions ---------------------------------------------------------------------------
    def _claim(self, name: str) -> int:
        """Take the next free version number with an exclusive create."""
        folder = self._p(name, "versions")
        # every numbered entry counts (a folder left without its claim too): never reuse one
        found = (_number(n.split(".")[0]) for n in self._ls(folder))
        number = max((n for n in found if n is not None), default=0) + 1
        import socket

        who = {"host": socket.gethostname(), "pid": os.getpid(), "time": _now()}
        if self._local:
            writable(
                self._root,
                self._rel(self._p(name, "versions", "x.claim")),
                what="the store folder",
                source=self.root,
                todo=_FIX,
            )
        for _ in range(10_000):
            path = self._p(name, "versions", f"{number:0{_WIDTH}d}.claim")
            try:
                with _remote.storage_errors(self._public(path), "claim a version number at"):
                    with self._fs.open(path, "xb") as f:
                        f.write(json.dumps(who).encode())
                return number
            except FileExistsError:
                number += 1
            except (ValueError, NotImplementedError):  # a filesystem without exclusive create
                raise StorageError(
                    errno.ENOTSUP,
                    f"{self._public(path)}: this filesystem cannot create "
                    f"files exclusively, so concurrent saves could collide; use a local "
                    f"folder, S3 or memory://",
                    self._public(path),
                ) from None
        raise StorageError(
            errno.EAGAIN, f"{self._public(folder)}: could not claim a version number", name
        )

    def _make_vdir(self, vdir: str) -> None:
        """Create a claimed version's folder: locally a real folder of the store, never a
        link someone planted under the claimed number."""
        if self._local:
            writable(
                self._root,
                self._rel(vdir) + "/x",
                what="the version folder",
                source=self.root,
                todo=_FIX,
            )

    def _discard(self, vdir: str) -> None:
        with contextlib.suppress(Exception):
            if self._fs.exists(vdir):
                self._fs.rm(vdir, recursive=True)
