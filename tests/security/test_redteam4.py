"""Red-team findings against the file readers changed in round 6 (the HDF5 guard child and its
cache, the per-version HDF5 structure check, in-memory pickle scans, pending digests).

Each test builds its hostile file from a benign one and first shows the naive behaviour where
one exists. Payloads are harmless: a damaged HDF5 superblock stands for a file that makes the
HDF5 C library misbehave (the guard child exists because some damaged files hang it
in-process); the attacker's timing is simulated deterministically by patching the call that
opens the window.
"""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
h5py = pytest.importorskip("h5py")

from modelstore.security import kerasfile, kerash5  # noqa: E402
from modelstore.security.kerash5 import KerasFileError, guard_h5, start_guard  # noqa: E402


def _pair(folder: Path, suffix: str = ".h5") -> tuple[Path, Path]:
    """A benign HDF5 file and a damaged one of the same size and mtime (the superblock's
    version byte changed: the HDF5 library refuses it, as the guard child then does)."""
    good = folder / f"good{suffix}"
    with h5py.File(good, "w") as f:
        f["w"] = np.zeros(4)
        f.attrs["x"] = "y"
    bad = folder / f"bad{suffix}"
    data = bytearray(good.read_bytes())
    data[8] = 0xEE
    bad.write_bytes(bytes(data))
    st = good.stat()
    os.utime(bad, ns=(st.st_atime_ns, st.st_mtime_ns))
    return good, bad


def test_guard_verdict_is_for_the_file_the_child_walked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard took the file's version from the path (stat) and the child opened the path
    later (after its own start-up): a benign file renamed over the path in between was
    walked, and the verdict was remembered for the damaged file, which, renamed back (same
    inode, size and mtime; the cache key had no ctime), then passed every later guard and
    reached the HDF5 library in-process. The child must walk the very file the verdict is
    remembered for."""
    good, bad = _pair(tmp_path)
    with pytest.raises(KerasFileError):
        guard_h5(bad)  # on its own, the damaged file is refused
    kerash5._GUARDED.clear()
    path = tmp_path / "m.h5"
    os.link(bad, path)
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> Any:  # the attacker's timing: before the child opens
        os.replace(good, path)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", popen)
    guard = start_guard(path)
    monkeypatch.setattr(subprocess, "Popen", real)
    try:
        guard.wait()  # refusing here is fine too: the file changed under the check
    except KerasFileError:
        pass
    os.link(bad, tmp_path / "t")
    os.replace(tmp_path / "t", path)  # the damaged file back under the path
    with pytest.raises(KerasFileError):
        guard_h5(path)
    with pytest.raises(KerasFileError):
        with kerasfile.open_h5(path, "h5"):
            pass


def _keras_archive(folder: Path, name: str, weights: bytes) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", '{"class_name": "Sequential", "config": {"layers": []}}')
        zf.writestr("metadata.json", "{}")
        zf.writestr("model.weights.h5", weights)
    return path


def test_keras_open_h5_guards_the_file_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``open_h5`` of a ``.keras`` archive relied on an earlier ``check`` of the path and ran
    no guard itself: an archive renamed over the path after the check reached h5py in-process
    without the child's walk (a file that hangs the HDF5 library would hang the caller). The
    guard must answer for the archive actually opened (here a guard that refuses everything
    stands for a file the child cannot walk)."""
    good, _ = _pair(tmp_path)
    checked = _keras_archive(tmp_path, "checked.keras", good.read_bytes())
    other = _keras_archive(tmp_path, "other.keras", good.read_bytes() + b"")
    path = tmp_path / "m.keras"
    os.link(checked, path)
    kerasfile.check(path, "keras")  # the scan's check: the child walked this archive
    os.replace(other, path)  # renamed over the path before the weights are opened
    monkeypatch.setattr(kerash5, "_GUARD", "raise SystemExit('the walk never finished')")
    with pytest.raises(KerasFileError, match="never finished"):
        with kerasfile.open_h5(path, "keras"):
            pass


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_reads_the_file_the_checks_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Keras opened the model by its path after every check (metadata, checksum, HDF5 guard
    and structure, config audit, size check) had read it: a file renamed over the path just
    before Keras' open and the checked one renamed back after (same inode, size and mtime, so
    the retry loop saw no change) was loaded unchecked. Keras must read the descriptor the
    checks read: the checked model, or a refusal."""
    keras = pytest.importorskip("keras")
    import modelstore as ms

    def model(value: float) -> Any:
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.layers[0].kernel.assign(np.full((3, 2), value, "float32"))
        return m

    good, other = tmp_path / f"good{suffix}", tmp_path / f"other{suffix}"
    ms.save(model(1.0), good)
    ms.save(model(7.0), other)  # stands for a file the checks would refuse
    path, keep = tmp_path / f"m{suffix}", tmp_path / f"keep{suffix}"
    os.link(good, path)
    os.link(good, keep)
    real = keras.saving.load_model

    def swapping(p: Any, *args: Any, **kwargs: Any) -> Any:  # the attacker's timing
        os.link(other, tmp_path / "t")
        os.replace(tmp_path / "t", path)
        try:
            return real(p, *args, **kwargs)
        finally:
            os.link(keep, tmp_path / "t")
            os.replace(tmp_path / "t", path)

    monkeypatch.setattr(keras.saving, "load_model", swapping)
    try:
        loaded = ms.load(path)
    except ms.ModelstoreError:
        return  # refused: the file Keras was to read is not the one checked
    assert float(loaded.layers[0].kernel.numpy()[0, 0]) == 1.0


def test_pending_digest_is_of_the_bytes_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save's sha256 is computed from the written file by a thread after ``ms.save``
    returned: a write to the file meanwhile (anyone allowed to write it) made ``ModelInfo
    .sha256``, and so a pin taken from it, the digest of bytes the save never wrote. The
    digest must be of the written bytes, or a refusal."""
    import hashlib
    import threading

    from modelstore.errors import IntegrityError
    from modelstore.storage import hashing

    path = tmp_path / "m.bin"
    written = b"w" * 100_000
    path.write_bytes(written)
    started, resume = threading.Event(), threading.Event()
    real = hashlib.sha256

    class Slow:  # the thread's hash, held at its first chunk until the file has been written to
        def __init__(self) -> None:
            self._h = real()

        def update(self, data: Any) -> None:
            started.set()
            resume.wait(10)
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(hashlib, "sha256", Slow)
    monkeypatch.setattr(hashing, "_CHUNK", 4096)  # the write lands in a chunk not yet read
    pending = hashing.hash_file_later(path)
    assert started.wait(10)
    monkeypatch.undo()
    with open(path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"XXXXXXXX")
    resume.set()
    try:
        digest = pending()
    except IntegrityError:
        return
    assert digest == hashlib.sha256(written).hexdigest()


def test_an_interrupted_guard_leaves_no_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Guard.wait`` dropped its handle on the child before waiting: an interrupt there
    (Ctrl-C, a timeout signal of the caller's) left the child running, and a file that hangs
    the HDF5 library left it running for ever. The child must be killed and reaped."""
    good, _ = _pair(tmp_path)
    monkeypatch.setattr(kerash5, "_GUARD", "import time\ntime.sleep(60)")
    guard = start_guard(good)
    proc = guard.proc
    assert proc is not None
    real = proc.communicate

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout"):
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(proc, "communicate", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            guard.wait()
        assert proc.poll() is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_keras_open_h5_checks_the_structure_of_the_archive_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``open_h5`` checked the archive's structure by its path, then opened the path again:
    an archive renamed over it in between (here one holding two ``model.weights.h5``
    members, which the structure check refuses and ``zipfile`` resolves to the last) was
    read unchecked. The check must be of the archive actually opened."""
    good, _ = _pair(tmp_path)
    with h5py.File(tmp_path / "hidden.h5", "w") as f:
        f["hidden"] = np.ones(4)
    checked = _keras_archive(tmp_path, "checked.keras", good.read_bytes())
    hostile = tmp_path / "hostile.keras"
    with zipfile.ZipFile(hostile, "w") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("config.json", "{}")
        zf.writestr("model.weights.h5", good.read_bytes())
        zf.writestr("model.weights.h5", (tmp_path / "hidden.h5").read_bytes())
    with pytest.raises(KerasFileError, match="two members"):
        kerasfile.check_zip(hostile)
    path = tmp_path / "m.keras"
    os.link(checked, path)
    real = kerasfile.check_zip

    def then_swap(*args: Any, **kwargs: Any) -> Any:  # the attacker's timing: after the check
        out = real(*args, **kwargs)
        if hostile.exists():
            os.replace(hostile, path)
        return out

    monkeypatch.setattr(kerasfile, "check_zip", then_swap)
    try:
        with kerasfile.open_h5(path, "keras") as f:
            assert "hidden" not in f
    except KerasFileError:
        pass  # refused: fine


def test_a_file_rewritten_in_place_during_a_load_is_noticed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's owner rewrote it in place (same inode and size) between the checks and
    Keras' read, then put the checked bytes and the old mtime back: the retry loop compared
    (inode, size, mtime) only and returned a model built from bytes no check read. ctime,
    which no one can set back, must be compared too: the load is retried, then refused."""
    keras = pytest.importorskip("keras")
    import modelstore as ms

    def model(value: float) -> Any:
        m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        m.layers[0].kernel.assign(np.full((3, 2), value, "float32"))
        return m

    path, other = tmp_path / "m.h5", tmp_path / "other.h5"
    ms.save(model(1.0), path)
    other.write_bytes(path.read_bytes())
    with h5py.File(other, "r+") as f:  # other weights, the same size
        kernels: list[str] = []
        f.visit(lambda name: kernels.append(name) if name.endswith("kernel") else None)
        f[kernels[0]][...] = 7.0
    checked, swapped = path.read_bytes(), other.read_bytes()
    assert len(checked) == len(swapped) and checked != swapped
    real = keras.saving.load_model

    def rewriting(p: Any, *args: Any, **kwargs: Any) -> Any:  # the owner's timing
        st = path.stat()
        with open(path, "r+b") as f:
            f.write(swapped)
        try:
            return real(p, *args, **kwargs)
        finally:
            with open(path, "r+b") as f:
                f.write(checked)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    monkeypatch.setattr(keras.saving, "load_model", rewriting)
    try:
        loaded = ms.load(path)
    except ms.ModelstoreError:
        return
    assert float(loaded.layers[0].kernel.numpy()[0, 0]) == 1.0


def test_the_guard_child_imports_nothing_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard child ran ``python -c``, which puts the working directory first on
    ``sys.path``: ``modelstore scan model.h5`` run inside a model folder that also holds an
    ``h5py.py`` ran that file (code from the folder) and took its clean exit for a finished
    walk, so the scan said "safe". The child must run isolated (``-I``)."""
    good, _ = _pair(tmp_path)
    marker = tmp_path / "MARKER"
    (tmp_path / "h5py.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nraise SystemExit(0)\n"
    )
    bad = tmp_path / "damaged.h5"
    data = bytearray(good.read_bytes())
    data[8] = 0xEE
    bad.write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KerasFileError):
        guard_h5(Path("damaged.h5"))
    assert not marker.exists()


def test_keras2_weights_h5_still_loads_through_the_descriptor(tmp_path: Path) -> None:
    """Not an attack: Keras loads a full-model ``.h5`` through the descriptor the checks read
    (``/proc/self/fd/N``); a Keras 2 ``save_weights("x.h5")`` file (no model_config) loaded
    into ``model=`` still reaches Keras under a suffixed name."""
    keras = pytest.importorskip("keras")
    import modelstore as ms

    def mlp() -> Any:
        return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])

    model = mlp()
    ms.save(model, tmp_path / "full.h5")
    path = tmp_path / "old.h5"
    with h5py.File(tmp_path / "full.h5") as src, h5py.File(path, "w") as dst:
        for key in src["model_weights"]:
            src.copy(f"model_weights/{key}", dst, name=key)
        for k, v in src["model_weights"].attrs.items():
            dst.attrs[k] = v
    out = ms.load(path, model=mlp())
    assert (out.layers[0].kernel.numpy() == model.layers[0].kernel.numpy()).all()
