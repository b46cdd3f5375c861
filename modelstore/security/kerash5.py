"""HDF5 checks for Keras weights, without Keras: links and storage that read other files or
places (external, soft and virtual), filter plugins (shared libraries), datasets declaring far
more than they store, and a first walk of the structure in a child process (the HDF5 C library
can loop forever on a damaged file). :mod:`.kerasfile` opens the files through these."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .zipwindow import WINDOW_SOURCE

#: A member or dataset whose declared size exceeds this many times what is stored is a bomb.
MAX_RATIO = 200
#: HDF5 filters built into the library and h5py (deflate, shuffle, fletcher32, szip, nbit,
#: scale-offset, lzf); any other filter id makes HDF5 load a plugin (a shared library).
H5_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


class KerasFileError(Exception):
    """The file is not a readable Keras file (``kind``: "format", "damaged" or "suspicious")."""

    def __init__(self, message: str, kind: str = "format") -> None:
        super().__init__(message)
        self.kind = kind


def check_h5(f: Any) -> None:
    """Refuse links and storage that read other files or other places, plugin filters, and
    datasets declaring far more than they store."""
    import h5py

    problems: list[str] = []
    totals = [0, 0]  # bytes declared, bytes stored, over every dataset

    def visit(name: str, link: Any) -> None:
        if isinstance(link, h5py.ExternalLink):
            problems.append(f"{name} is an external link to {link.filename}")
        elif isinstance(link, h5py.SoftLink):
            problems.append(f"{name} is a soft link to {link.path}")
        elif isinstance(link, h5py.HardLink):
            obj = f.get(name)
            if isinstance(obj, h5py.Dataset):
                problems.extend(_dataset_problems(name, obj, totals))

    f.visititems_links(visit)
    if not problems and totals[0] > MAX_RATIO * totals[1] + (1 << 20):
        # each dataset within its own slack, the file as a whole far beyond what it stores
        problems.append(f"the datasets declare {totals[0]} bytes in all but store {totals[1]}")
    if problems:
        raise KerasFileError("; ".join(problems[:5]), "suspicious")


def _dataset_problems(name: str, obj: Any, totals: list[int] | None = None) -> list[str]:
    out = []
    if obj.external:
        out.append(f"{name} stores its data in external files")
    if obj.is_virtual:
        out.append(f"{name} is a virtual dataset mapping other files")
    plist = obj.id.get_create_plist()
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if any(fid not in H5_FILTERS for fid in filters):
        out.append(
            f"{name} needs HDF5 filter plugin(s) {sorted(set(filters) - H5_FILTERS)} (shared libraries)"
        )
    declared = obj.size * obj.dtype.itemsize
    stored = obj.id.get_storage_size()
    if totals is not None:
        totals[0] += declared
        totals[1] += stored
    if declared > MAX_RATIO * stored + (1 << 20):
        # reading it would allocate what the file never stored (fill values)
        out.append(f"{name} declares {declared} bytes but stores {stored}")
    return out


#: How long the HDF5 library may take to walk a file's structure and attributes.
GUARD_SECONDS = 5
_GUARD = """
import sys, zipfile, h5py
if len(sys.argv) > 2:  # open_stored: zipwindow's source runs before this script
    zf = zipfile.ZipFile(sys.argv[1])
    fh = open_stored(zf, sys.argv[2]) or zf.open(sys.argv[2])  # kept: h5py does not hold it
    f = h5py.File(fh, "r")
else:
    f = h5py.File(sys.argv[1], "r")
def attrs(obj):
    for key in obj.attrs:
        obj.attrs[key]
attrs(f)
f.visititems(lambda name, obj: attrs(obj))
f.visititems_links(lambda name, link: None)
f.close()  # before the file object it reads goes away at exit
"""
#: file version (device, inode, size, mtime, ctime, member) -> failure, if any; bounded
_GUARDED: OrderedDict[tuple[Any, ...], str | None] = OrderedDict()
_UNKNOWN = object()


def guard_h5(path: Path, member: str = "", fd: int | None = None) -> None:
    """Walk the HDF5 structure and read every attribute in a child process first.

    The HDF5 C library can loop forever on some damaged files (seen: a variable-length
    string attribute pointing into a corrupt global heap), and C code cannot be interrupted
    in-process. A walk that does not finish in GUARD_SECONDS means a damaged file; one that
    does means the same reads are safe here. Done once per file version per process; for a
    ``.keras`` archive, on its ``model.weights.h5`` member. ``fd``: the descriptor of the file
    the caller has opened (and will read): the verdict is for that file, never for whatever
    the path names at some other instant.
    """
    start_guard(path, member, fd).wait()


class Guard:
    """A guard child under way (``proc``), or a remembered answer (``proc`` None)."""

    def __init__(
        self,
        key: tuple[Any, ...],
        proc: Any = None,
        fd: int | None = None,
        own: bool = False,
        failure: str | None = None,
    ) -> None:
        self.key, self.proc, self.fd, self.own, self.failure = key, proc, fd, own, failure

    def wait(self) -> None:
        """The child's answer (remembered for this file version): KerasFileError if damaged."""
        import subprocess

        if self.proc is not None:
            proc, self.proc = self.proc, None
            try:
                try:
                    _, err = proc.communicate(timeout=GUARD_SECONDS)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()
                    failure: str | None = (
                        f"the HDF5 library did not finish reading the file's structure in "
                        f"{GUARD_SECONDS} s"
                    )
                else:
                    last = (err.strip().splitlines() or ["unknown error"])[-1]
                    failure = (
                        None
                        if proc.returncode == 0
                        else f"the HDF5 structure cannot be read ({last[:200]})"
                    )
                if self.fd is not None and _version(os.fstat(self.fd), self.key[-1]) != self.key:
                    # written to while the child walked it: the verdict is for no one version
                    raise KerasFileError(
                        "the file changed while its HDF5 structure was checked", "damaged"
                    )
                _remember(self.key, failure)
                self.failure = failure
            finally:
                if proc.poll() is None:  # interrupted (KeyboardInterrupt): no child left behind
                    proc.kill()
                    proc.communicate()
                self._close()
        if self.failure is not None:
            raise KerasFileError(self.failure, "damaged")

    def cancel(self) -> None:
        """Stop the child (if still running) and reap it; nothing is remembered."""
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self._close()

    def _close(self) -> None:
        if self.own and self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _version(st: os.stat_result, member: str) -> tuple[Any, ...]:
    """One version of one file: its inode and every time a write changes (ctime included:
    mtime can be set back, ctime cannot)."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, member)


def _remember(key: tuple[Any, ...], failure: str | None) -> None:
    _GUARDED[key] = failure
    while len(_GUARDED) > 256:
        _GUARDED.popitem(last=False)


def start_guard(path: Path, member: str = "", fd: int | None = None) -> Guard:
    """:func:`guard_h5` in two halves: the child starts now and :meth:`Guard.wait` takes its
    answer, so the caller can check something else meanwhile (the archive's CRCs). Call
    ``wait()`` or, on an error of the caller's own, ``cancel()``.

    The child reads the very file the verdict is remembered for: a descriptor (the caller's
    ``fd``, or one opened here) handed to it, its version taken with ``fstat`` before and
    after the walk (a path would name another file once a rename lands on it)."""
    import subprocess
    import sys

    own = fd is None
    if fd is None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        key = _version(os.fstat(fd), member)
        known = _GUARDED.get(key, _UNKNOWN)
        if known is not _UNKNOWN:
            if own:
                os.close(fd)
            return Guard(key, failure=known)  # type: ignore[arg-type]
        target = f"/proc/self/fd/{fd}" if os.path.isdir("/proc/self/fd") else str(path)
        code = WINDOW_SOURCE + _GUARD  # the child reads the member as the parent will
        # -I: isolated; without it the child imports from the working directory first (an
        # h5py.py beside the model, run as code, answering "walked fine")
        args = [sys.executable, "-I", "-c", code, target] + ([member] if member else [])
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            pass_fds=(fd,),
        )
    except BaseException:
        if own:
            os.close(fd)
        raise
    return Guard(key, proc, fd, own)
