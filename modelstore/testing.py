"""The contract every backend keeps, as a pytest suite to subclass.

Built-in and third-party backends alike subclass :class:`BackendContract` in their tests and
fill in a few hooks; the suite then checks the promises modelstore makes for every format::

    class TestMyFormat(BackendContract):
        backend_name = "myformat"
        suffix = ".myf"
        backend_module = "my_pkg.backend"
        framework_modules = ("myframework",)

        def make_model(self): ...
        def make_input(self): ...
        def native_save(self, model, path): ...   # the framework's own writer
        def native_load(self, path): ...          # the framework's own reader
        def outputs_of(self, loaded): ...         # comparable outputs of what native_load gave
        def load_kwargs(self): return {"model": MyModel}

Requires pytest (and numpy for the comparisons). Importing this module imports neither.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

from .backends import Backend
from .pipeline.registry import REGISTRY
from .storage.sidecar import SIDECAR_SUFFIX

__all__ = ["BackendContract", "Backend", "run_python"]


def run_python(
    code: str, *, cwd: str | Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (same executable and sys.path) and capture output."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


class BackendContract:
    """Shared behaviour tests; subclasses set the class attributes and implement the hooks."""

    backend_name: ClassVar[str]
    suffix: ClassVar[str]
    backend_module: ClassVar[str]
    framework_modules: ClassVar[tuple[str, ...]] = ()
    #: How closely a reloaded model must match the original (0: bit for bit).
    rtol: ClassVar[float] = 0.0
    atol: ClassVar[float] = 0.0

    # -- hooks ---------------------------------------------------------------------------
    def make_model(self) -> Any:
        raise NotImplementedError

    def make_input(self) -> Any:
        raise NotImplementedError

    def native_save(self, model: Any, path: Path) -> None:
        """Write ``model`` with the framework's own saver (a 'foreign' file)."""
        raise NotImplementedError

    def native_load(self, path: Path) -> Any:
        """Read ``path`` with the framework's own loader."""
        raise NotImplementedError

    def outputs_of(self, loaded: Any, x: Any) -> Any:
        """Outputs of whatever :meth:`native_load` returned, as numpy."""
        raise NotImplementedError

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def save_kwargs(self) -> dict[str, Any]:
        return {}

    def payload_offset(self, path: Path) -> int:
        """Where :meth:`test_checksum_catches_a_flipped_byte` flips a byte: inside the payload,
        away from headers and directories (default: 2% before the end of the file)."""
        size = path.stat().st_size
        return size - max(1, size // 50)

    def write_hostile(self, path: Path, marker: Path) -> bool:
        """Write a file that would create ``marker`` if loaded naively; False if the format
        cannot carry code (then the suite checks that its metadata cannot smuggle any)."""
        return False

    # -- helpers -------------------------------------------------------------------------
    def _backend(self) -> Backend:
        return REGISTRY.get(self.backend_name)

    def _save(self, model: Any, path: Path, **kw: Any) -> Any:
        import modelstore as ms

        return ms.save(model, path, **{**self.save_kwargs(), **kw})

    def _load(self, path: Path, **kw: Any) -> Any:
        import warnings

        import modelstore as ms

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            return ms.load(path, **{**self.load_kwargs(), **kw})

    # -- the contract --------------------------------------------------------------------
    def test_declares_itself(self) -> None:
        """The backend declares a name, suffixes, a risk level and an extra."""
        b = self._backend()
        assert b.name == self.backend_name
        assert self.suffix in b.suffixes
        assert b.risk in ("safe", "restricted", "pickle")

    def test_round_trip_predicts_the_same(self, tmp_path: Path) -> None:
        """A saved and reloaded model predicts exactly what the original predicted."""
        import numpy as np

        import modelstore as ms

        model, x = self.make_model(), self.make_input()
        path = tmp_path / f"model{self.suffix}"
        info = self._save(model, path)
        assert info.format == self.backend_name and info.size_bytes == path.stat().st_size
        loaded = self._load(path)
        np.testing.assert_allclose(
            ms.predict(loaded, x), ms.predict(model, x), rtol=self.rtol, atol=self.atol
        )

    def test_native_loader_reads_our_file(self, tmp_path: Path) -> None:
        """The framework's own loader reads what modelstore wrote, with the same outputs."""
        import numpy as np

        import modelstore as ms

        model, x = self.make_model(), self.make_input()
        path = tmp_path / f"model{self.suffix}"
        self._save(model, path)
        native = self.native_load(path)
        np.testing.assert_allclose(
            self.outputs_of(native, x),
            ms.predict(model, x),
            rtol=max(self.rtol, 1e-6),
            atol=max(self.atol, 1e-6),
        )

    def test_foreign_file_loads(self, tmp_path: Path) -> None:
        """A file written by the framework itself, with no modelstore metadata, loads."""
        import numpy as np

        import modelstore as ms

        model, x = self.make_model(), self.make_input()
        path = tmp_path / f"foreign{self.suffix}"
        self.native_save(model, path)
        assert not Path(str(path) + SIDECAR_SUFFIX).exists()
        loaded = self._load(path)
        np.testing.assert_allclose(
            ms.predict(loaded, x), ms.predict(model, x), rtol=self.rtol, atol=self.atol
        )
        assert ms.inspect(path).format == self.backend_name

    def test_checksum_catches_a_flipped_byte(self, tmp_path: Path) -> None:
        """Flipping one byte of the payload makes load raise IntegrityError, not garbage."""
        import pytest

        import modelstore as ms

        path = tmp_path / f"model{self.suffix}"
        self._save(self.make_model(), path)
        data = bytearray(path.read_bytes())
        data[self.payload_offset(path)] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises((ms.IntegrityError, ms.FormatError)):
            self._load(path)

    def test_importing_backend_module_imports_no_framework(self) -> None:
        """Importing the backend module (and modelstore) leaves the framework unimported."""
        mods = list(self.framework_modules) + ["numpy"]
        proc = run_python(f"""
            import sys, json
            import modelstore, {self.backend_module}
            print(json.dumps([m for m in {mods!r} if m in sys.modules]))
        """)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == []

    def test_trust_gate_holds(self, tmp_path: Path) -> None:
        """A hostile file is refused without trust and its payload never runs; a recorded
        class path is never imported without trust."""
        import pytest

        import modelstore as ms

        marker = tmp_path / "pwned"
        hostile = tmp_path / f"hostile{self.suffix}"
        if self.write_hostile(hostile, marker):
            with pytest.raises(ms.UnsafeModelError):
                ms.load(hostile)
            assert ms.scan(hostile).verdict == "unsafe"
            assert ms.inspect(hostile).executes_code
            assert not marker.exists(), "the hostile payload ran"
        # metadata naming a class whose module has a side effect on import
        modname = f"ms_evil_{abs(hash(str(tmp_path))) % 10**8}"
        (tmp_path / f"{modname}.py").write_text(
            f"open({str(marker)!r}, 'w').close()\nclass Evil: pass\n"
        )
        sys.path.insert(0, str(tmp_path))
        try:
            path = tmp_path / f"model{self.suffix}"
            self._save(self.make_model(), path)
            self.set_recorded_class(path, f"{modname}:Evil")
            kwargs = {k: v for k, v in self.load_kwargs().items() if k != "model"}
            try:
                self._load_plain(path, **kwargs)
            except ms.ModelstoreError:
                pass
            assert not marker.exists(), (
                "a class path recorded in the file was imported without trust"
            )
        finally:
            sys.path.remove(str(tmp_path))

    def set_recorded_class(self, path: Path, class_path: str) -> None:
        """Point the model class recorded for ``path`` at ``class_path``. The default edits
        the sidecar; backends that embed metadata override this."""
        side = Path(str(path) + SIDECAR_SUFFIX)
        if side.exists():
            data = json.loads(side.read_text())
            for meta in data.get("versions", [data]):
                meta["model_class"] = class_path
            side.write_text(json.dumps(data))

    def _load_plain(self, path: Path, **kw: Any) -> Any:
        import warnings

        import modelstore as ms

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.PickleWarning)
            return ms.load(path, verify=False, **kw)
