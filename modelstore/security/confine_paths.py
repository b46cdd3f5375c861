"""The checks under :mod:`.confine`: a companion name read from a file (:func:`check_name`), the
path it resolves to (links may only lead inside the model's folder, or within one Hugging Face
cache repository), and what is found there (a regular file of its own, not the main file, not
kernel state). :mod:`.confine` opens and writes through these checks; see its docstring for
the whole contract."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Literal

from ..errors import ModelNotFoundError, UnsafeModelError

Kind = Literal["file", "dir"]


#: Longest companion name accepted (real ones are a few dozen characters).
MAX_NAME = 1024
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_HF_REPO = re.compile(r"(models|datasets|spaces)--.+")
_KERNEL = ("/proc", "/sys", "/dev")
_SHM = "/dev/shm"


class ConfinementError(UnsafeModelError):
    """A companion file's name or path leads outside the model's folder, or is not a plain
    regular file of its own; nothing was read from it (or written through it).

    ``detail`` is what was found, without the advice that ends the message.
    """

    def __init__(self, detail: str, todo: str) -> None:
        super().__init__(f"{detail}; refused. {todo}")
        self.detail = detail


def refuse(source: object, what: str, name: object, found: str, todo: str) -> ConfinementError:
    where = f"{source}: " if source is not None else ""
    shown = repr(name) if len(repr(name)) <= 200 else repr(name)[:160] + "...'"
    return ConfinementError(f"{where}{what} {shown} {found}", todo)


FIX_NAME = "Only plain relative names inside the model's folder are accepted; the file is damaged or hostile"


def check_name(name: object, *, what: str, source: object = None) -> tuple[str, ...]:
    """The components of ``name`` (a relative path read from a file), or ConfinementError
    for a name that could lead anywhere but into the folder. Reads nothing from disk."""
    if not isinstance(name, str):
        raise refuse(source, what, name, f"is a {type(name).__name__}, not a file name", FIX_NAME)
    found = None
    if not name or len(name) > MAX_NAME:
        found = "is empty" if not name else f"is {len(name)} characters long"
    elif _CONTROL.search(name):
        found = "holds a NUL or control character"
    elif name.startswith("/") or os.path.isabs(name):
        found = "is an absolute path"
    elif "\\" in name or ":" in name:
        found = "holds a backslash or a colon (a Windows separator, drive or stream)"
    elif _ESCAPE.search(name):
        found = "holds a percent-escape (a URL layer would decode it into a separator or a dot)"
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if found is None and ".." in parts:
        found = "climbs out of the folder with '..'"
    elif found is None and not parts:
        found = "names no file"
    elif found is None and any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        found = "has a component longer than a file name can be"
    if found is not None:
        raise refuse(source, what, name, found, FIX_NAME)
    return parts


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder if folder.endswith(os.sep) else folder + os.sep)


def _hf_root(real_base: Path, real: Path) -> Path | None:
    """The cache repository folder when ``real_base`` is (inside) a Hugging Face snapshot and
    ``real`` is a content-addressed blob of that same repository; else None."""
    for folder in (real_base, *real_base.parents):
        if folder.parent.name == "snapshots":
            repo = folder.parent.parent
            if (
                _HF_REPO.fullmatch(repo.name)
                and real.parent == repo / "blobs"
                and _HASH.fullmatch(real.name)
            ):
                return repo
            return None
    return None


def _kernel(real: str) -> bool:
    return any(_inside(real, k) for k in _KERNEL) and not _inside(real, _SHM)


def _real(real_base: str, parts: tuple[str, ...]) -> tuple[str, os.stat_result | None]:
    """The real path of ``real_base/parts`` and, when no component is a link, its lstat
    (the common case costs one lstat per component, not a full ``realpath``)."""
    path, st = real_base, None
    for part in parts:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except OSError:
            break
        if stat.S_ISLNK(st.st_mode):
            break
    else:
        return path, st
    return os.path.realpath(os.path.join(real_base, *parts)), None


def resolve(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    source: object,
    main: Path | None,
    hf_cache: bool,
    kind: Kind,
    todo: str | None = None,
) -> tuple[Path, Path, os.stat_result]:
    """(real path, real folder it was checked against, its stat)."""
    try:
        return _resolve_checked(
            base, name, what=what, source=source, main=main, hf_cache=hf_cache, kind=kind
        )
    except ConfinementError as e:
        if todo is None:
            raise
        raise ConfinementError(e.detail, todo) from None


def _resolve_checked(
    base: str | os.PathLike[str],
    name: object,
    *,
    what: str,
    source: object,
    main: Path | None,
    hf_cache: bool,
    kind: Kind,
) -> tuple[Path, Path, os.stat_result]:
    parts = check_name(name, what=what, source=source)
    base_s = os.fspath(base)
    real_base = os.path.realpath(base_s)  # the caller's folder: its own links are the caller's
    real, st = _real(real_base, parts)
    root = real_base
    if not _inside(real, real_base):
        hf = _hf_root(Path(real_base), Path(real)) if hf_cache else None
        if hf is None:
            raise refuse(
                source,
                what,
                name,
                f"is a link (or passes through a linked folder) leading "
                f"outside {base_s} (to {real})",
                "Copy the file itself into the folder if you trust it",
            )
        root = str(hf)
    if _kernel(real):
        raise refuse(
            source,
            what,
            name,
            f"leads into {real}, kernel state rather than a file",
            "A model's files are ordinary files in its folder",
        )
    if st is None:
        try:
            st = os.stat(real)
        except (
            FileNotFoundError,
            NotADirectoryError,
        ):  # a file where a folder would be: no such path
            lexical = os.path.join(base_s, *parts)
            if os.path.lexists(lexical):
                raise refuse(
                    source, what, name, "is a broken link", "Replace it with the file itself"
                ) from None
            msg = f"{source or base_s}: {what} {name!r} does not exist in {base_s}"
            raise ModelNotFoundError(errno.ENOENT, msg, lexical) from None
        except OSError as e:  # a link loop (ELOOP), a name too long for this file system
            raise refuse(
                source, what, name, f"cannot be resolved ({e.strerror})", FIX_NAME
            ) from None
    check_stat(st, kind, source=source, what=what, name=name)
    if main is not None and kind == "file" and same_file(st, main):
        raise refuse(source, what, name, "is the model file itself", FIX_NAME)
    return Path(real), Path(root), st


def same_file(st: os.stat_result, main: Path) -> bool:
    try:
        return os.path.samestat(st, os.stat(main))
    except OSError:
        return False


def check_stat(st: os.stat_result, kind: Kind, *, source: object, what: str, name: object) -> None:
    if kind == "dir":
        if not stat.S_ISDIR(st.st_mode):
            raise refuse(
                source, what, name, "is not a folder", "Remove it; the store entry is damaged"
            )
        return
    if not stat.S_ISREG(st.st_mode):
        kind_of = (
            "a folder"
            if stat.S_ISDIR(st.st_mode)
            else "a FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise refuse(
            source,
            what,
            name,
            f"is {kind_of}, not a regular file",
            "Replace it with the file itself",
        )
    if st.st_nlink > 1:
        raise refuse(
            source,
            what,
            name,
            f"has {st.st_nlink - 1} other hard link(s), so it may be a file from elsewhere",
            "Copy it (cp, not ln) into the folder if you trust it",
        )
