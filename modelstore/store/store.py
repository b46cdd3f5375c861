"""``Store``: numbered, immutable model versions with aliases, on any fsspec root.

Layout under the root (a local folder, ``s3://bucket/prefix``, ``memory://...``)::

    <name>/versions/000003.claim          who took number 3 (created exclusively, never removed)
    <name>/versions/000003/model.safetensors   the files of version 3 (any supported format)
    <name>/versions/000003.json           the version's manifest: written LAST, it publishes it
    <name>/aliases/prod.json              {"version": 3}

A save first *claims* the next number with an exclusive create (``O_EXCL`` locally, a
conditional ``PUT`` with ``If-None-Match: *`` on S3), so two concurrent saves of one name get
distinct numbers and neither is lost. It then writes the model's files into the version's
own folder, and the manifest last: a reader lists manifests only, so it never sees a version
whose files are still uploading, and a killed save leaves an invisible, unused number.
Claims are kept after ``delete`` so numbers are never reused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from pathlib import Path
from typing import Any

from .. import api as _api
from ..errors import ArgumentError, StorageError
from ..pipeline import choose, locate
from ..security.confine import confine, create_new, open_confined, writable
from ..storage import remote as _remote
from ..storage.files import PathLike
from .folder import _FIX, _RESERVED, STORE_VERSION
from .records import (  # noqa: F401
    _MAX_DIGITS,
    ModelVersion,
    _now,
    _number,
    _size,
    _suffix_for,
    _tags,
    _text,
    default_root,
)
from .versions import _Versions


class Store(_Versions):
    """A versioned model store on a local folder or any fsspec URI.

    Parameters
    ----------
    root : a folder or URI (``s3://bucket/models``); default ``$MODELSTORE_HOME`` or
        ``~/.modelstore``. A local folder is created if missing.
    storage_options : passed to fsspec (e.g. ``{"endpoint_url": ..., "key": ...}`` for S3).

    Examples
    --------
    >>> store = ms.Store("s3://team-models")
    >>> v = store.save(net, "digits-mlp", config={"hidden": 32}, tags={"data": "digits"})
    >>> store.alias("digits-mlp", v, "prod")
    >>> net = store.load("digits-mlp@prod", model=Net)
    """

    def __init__(
        self,
        root: PathLike | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
        signed_by: Any = None,
    ) -> None:
        self._signed_by = (
            signed_by  # every load must be signed by this key / policy (docs/signing.md)
        )
        root_str = os.fspath(root) if root is not None else default_root()
        self._options = dict(storage_options or {})
        root_local, uri = _remote.split(root_str)
        if uri is not None:
            self._fs, path = _remote.open_fs(root_str, self._options)
            self._root = path.rstrip("/")
            self._uri_prefix = root_str.rstrip("/")
            self._local = False
        else:
            local = Path(root_local).expanduser().resolve()
            try:
                local.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(
                    e.errno or errno.EIO,
                    f"{local}: cannot create the store folder: {e.strerror}",
                    str(local),
                ) from None
            self._fs, _ = _remote.open_fs(f"file://{local}")
            self._root = str(local)
            self._uri_prefix = str(local)
            self._local = True
        self.root = root_str if not self._local else self._root

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    # -- names and paths ------------------------------------------------------------------
    def save(
        self,
        model: Any,
        name: str,
        *,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | list[str] | None = None,
        format: str | None = None,
        **save_options: Any,
    ) -> int:
        """Save ``model`` as the next version of ``name`` and return its number.

        ``save_options`` go to :func:`modelstore.save` (``config=``, ``labels=``,
        ``sample_input=``, ``dtype=``, ``max_shard_size=``...). The format is the one
        :func:`modelstore.save` picks for the object (safetensors for torch modules,
        joblib for scikit-learn, .keras for Keras), or ``format=``.
        """
        self._check_name(name)
        tag_map = _tags(tags)
        suffix = _suffix_for(model, format)
        number = self._claim(name)
        vdir = self._vdir(name, number)
        shards = save_options.get("max_shard_size") is not None
        entry = "model" if shards else f"model{suffix}"
        target = _remote.join(self._public(vdir), entry)
        try:
            self._make_vdir(vdir)
            info = _api.save(
                model,
                target,
                format=format,
                metadata=metadata,
                storage_options=self._options,
                **save_options,
            )
        except BaseException:
            self._discard(vdir)
            raise
        return self._publish(name, number, vdir, info, tag_map)

    def push(
        self,
        path: PathLike,
        name: str,
        *,
        metadata: dict[str, Any] | None = None,
        tags: dict[str, str] | list[str] | None = None,
        sign_with: Any = None,
    ) -> int:
        """Add an existing local model file (with its sidecar, shards or external data) as
        the next version of ``name``, without loading it. ``metadata`` is kept in the manifest.
        ``sign_with`` (a private key) signs those files and stores the signature with them."""
        self._check_name(name)
        src = Path(os.fspath(path))
        info = _api.inspect(src)  # reads headers only: a hostile file is not run by a push
        main = choose.model_file(src)
        files = locate.model_paths(main, choose.for_file(main, info.format))
        metadata = {**info.metadata, **(metadata or {})}
        self._check_json(metadata, "metadata")  # before a number is claimed for it
        entry = Path(info.path).relative_to(src.parent).as_posix()
        uploads = [(f, f.relative_to(src.parent).as_posix()) for f in files]
        if sign_with is not None:  # the signature travels as one more file of the version
            from ..api.signing import push_signature

            uploads.append((push_signature(Path(info.path), sign_with), entry + ".sig"))
        number = self._claim(name)
        vdir = self._vdir(name, number)
        try:
            self._make_vdir(vdir)
            for f, rel in uploads:  # data first, describing files last
                dest = _remote.join(vdir, rel)
                if self._local:
                    writable(
                        self._root,
                        self._rel(dest),
                        what="the version folder",
                        source=self.root,
                        todo=_FIX,
                    )
                with _remote.storage_errors(self._public(dest), "upload"):
                    if sign_with is not None and (f, rel) == uploads[-1]:
                        self._fs.put_file(str(f), dest)  # the signature we just wrote
                    else:
                        self._upload(f, main, src, dest)
        except BaseException:
            self._discard(vdir)
            raise
        finally:
            if sign_with is not None:
                import shutil

                shutil.rmtree(uploads[-1][0].parent, ignore_errors=True)
        info = dataclasses.replace(
            info, path=_remote.join(self._public(vdir), entry), metadata=metadata
        )
        return self._publish(name, number, vdir, info, _tags(tags))

    def _upload(self, f: Path, main: Path, given: Path, dest: str) -> None:
        """Upload ``f`` from the descriptor the confinement check opened (red team: checked
        by name, then uploaded by name, a companion swapped for a link in between put a file
        from outside the folder into the store in 8 pushes of 10; so did the main file a
        folder's contents chose). Only the file the caller named is opened as it is."""
        import shutil

        owner = None if f == main else main
        with (
            (
                open(f, "rb")
                if f == given
                else open_confined(
                    f.parent, f.name, what="the file to push", source=main, main=owner
                )
            ) as src,
            self._fs.open(dest, "wb") as out,
        ):
            shutil.copyfileobj(src, out, 1 << 20)

    def _publish(self, name: str, number: int, vdir: str, info: Any, tags: dict[str, str]) -> int:
        self._fresh(vdir)
        with _remote.storage_errors(self._public(vdir), "list"):
            found = self._fs.find(vdir, detail=True)  # one listing, sizes included
        files = {
            str(p)[len(vdir) :].lstrip("/"): int(d.get("size") or 0)
            for p, d in sorted(found.items())
        }
        entry = info.path[len(self._public(vdir)) :].lstrip("/")
        manifest = {
            "store_version": STORE_VERSION,
            "name": name,
            "version": number,
            "created": _now(),
            "entry": entry,
            "format": info.format,
            "framework": info.framework,
            "size_bytes": sum(files.values()),
            "sha256": info.sha256,
            "files": files,
            "metadata": info.metadata,
            "tags": tags,
        }
        # the manifest last: the version exists for readers only once all its files do
        self._write_json(vdir + ".json", manifest)
        return number

    def load(self, ref: str, **load_options: Any) -> Any:
        """Load a version through :func:`modelstore.load` (same trust gate and checks):
        ``store.load("digits-mlp@prod", model=Net)``. ``signed_by=`` (default: the store's)
        refuses a version whose stored signature that signer did not make."""
        signed_by = load_options.pop("signed_by", None)
        signed_by = (
            signed_by if signed_by is not None else self._signed_by
        )  # None never lifts the store's
        if signed_by is not None:
            from ..api.signing import load_from_store

            return load_from_store(self, ref, signed_by, load_options)
        return _api.load(
            self._entry(self.resolve(ref)), storage_options=self._options, **load_options
        )

    def pull(self, ref: str, dest: PathLike) -> Path:
        """Copy a version's files into the local folder ``dest``; return the model file's path.

        Only the files the manifest lists, each confined to the version's folder (locally:
        read without following links, never a hard link, FIFO or device), each written
        to ``dest`` under a fresh name and renamed into place (never written through a link
        found there; folders on the way must be ``dest``'s own)."""
        import shutil

        version = self.resolve(ref)
        self._entry(version)
        folder = Path(os.fspath(dest))
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                e.errno or errno.EIO,
                f"{folder}: cannot create the folder: {e.strerror}",
                str(folder),
            ) from None
        vdir = self._vdir(version.name, version.version)
        source = self._public(vdir + ".json")
        targets = {}
        for rel in version.files:  # every file checked before any is copied
            if self._local:
                confine(
                    self._root,
                    self._rel(_remote.join(vdir, rel)),
                    what="the version file",
                    source=source,
                    todo=_FIX,
                )
            targets[rel] = writable(folder, rel, what="the pulled file", source=source)
        for rel, local in targets.items():
            tmp = local.with_name(
                f".{local.name}.{os.getpid()}.{os.urandom(4).hex()}.modelstore-tmp"
            )
            try:
                if self._local:
                    with open_confined(
                        self._root,
                        self._rel(_remote.join(vdir, rel)),
                        what="the version file",
                        source=source,
                        todo=_FIX,
                    ) as src:
                        with create_new(tmp) as out:
                            shutil.copyfileobj(src, out, 16 << 20)
                else:
                    with _remote.storage_errors(self._public(_remote.join(vdir, rel)), "download"):
                        self._fs.get_file(_remote.join(vdir, rel), str(tmp))
                os.replace(tmp, local)
            finally:
                with contextlib.suppress(OSError):
                    tmp.unlink()
        entry = version.path[len(self._public(vdir)) :].lstrip("/")
        return folder / entry

    def alias(self, name: str, version: int, alias: str) -> None:
        """Point ``alias`` (e.g. ``"prod"``) at ``version`` of ``name``; moves it if it exists."""
        self._check_name(name)
        self._check_name(alias, "alias")
        if alias.isdigit() or alias in _RESERVED:
            raise ArgumentError(
                f"{alias!r} cannot be an alias: numbers and 'latest' already mean versions"
            )
        if type(version) is not int:
            raise ArgumentError(f"version must be an int, not {type(version).__name__}")
        self.resolve(f"{name}@{version}")  # must exist
        self._write_json(
            self._p(name, "aliases", f"{alias}.json"), {"version": version, "updated": _now()}
        )

    def delete(self, name: str, version: int) -> None:
        """Remove one version (its manifest first, so readers stop seeing it, then its files)
        and the aliases that pointed at it. Its number is never reused."""
        found = self.resolve(f"{name}@{version}")
        vdir = self._vdir(name, found.version)
        with _remote.storage_errors(self._public(vdir), "delete"):
            self._fs.rm_file(vdir + ".json")
            for alias in found.aliases:
                with contextlib.suppress(FileNotFoundError):
                    self._fs.rm_file(self._p(name, "aliases", f"{alias}.json"))
        self._discard(vdir)
