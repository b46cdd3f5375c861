"""The backend registry: the built-in table, suffixes, sniffing, register(), plugins."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modelstore as ms
from modelstore.backends import Backend
from modelstore.pipeline.registry import BUILTIN, REGISTRY
from modelstore.testing import run_python


class ToyBackend(Backend):
    name = "toy"
    suffixes = (".toy",)

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.startswith(b"TOY!")


def test_builtin_table_is_import_strings() -> None:
    """Built-ins are import strings with the extra that installs them."""
    assert [e.name for e in BUILTIN][:2] == ["safetensors", "torch"]
    for e in BUILTIN:
        assert ":" in e.target and e.extra and all(s.startswith(".") for s in e.suffixes)
    assert {"safetensors", "torch"} <= set(ms.backends())


def test_suffix_lookup() -> None:
    """Suffixes map to candidate backends, case-insensitively."""
    assert REGISTRY.for_suffix(Path("a/b.PTH")) == ["torch"]
    assert REGISTRY.for_suffix(Path("m.safetensors")) == ["safetensors"]
    assert REGISTRY.for_suffix(Path("m.unknown")) == []


def test_register_and_clash(tmp_path: Path) -> None:
    """register() adds a backend; a taken name raises RegistryError unless clobber=True."""
    ms.register(ToyBackend)
    try:
        assert "toy" in ms.backends()
        with pytest.raises(ms.RegistryError, match="already named 'toy'"):
            ms.register(ToyBackend())
        ms.register(ToyBackend, clobber=True)
        f = tmp_path / "x.bin"
        f.write_bytes(b"TOY!....")
        assert ms.scan(f).format == "toy"  # sniffed by content, no suffix match
        with pytest.raises(ms.RegistryError, match="built-in"):

            class Fake(ToyBackend):
                name = "torch"

            ms.register(Fake)
    finally:
        REGISTRY.unregister("toy")
    with pytest.raises(ms.RegistryError):
        ms.register(object())


def test_unknown_format_name() -> None:
    """format= with an unknown name lists the known ones."""
    with pytest.raises(ms.FormatError, match="known formats"):
        REGISTRY.get("nope")


def _make_plugin(root: Path, dist: str, module: str, body: str, ep_value: str) -> None:
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[modelstore.backends]\n{dist} = {ep_value}\n")


def _plant_evil(folder: Path) -> Path:
    """A model folder holding a plugin distribution whose module writes a marker when imported."""
    marker = folder / "marker"
    _make_plugin(
        folder,
        "evilplugin",
        "evilplugin",
        f"""
        open({str(marker)!r}, "w").close()
        from modelstore.backends import Backend
        class Backend(Backend):
            name = "evil"
            suffixes = (".bin",)
    """,
        "evilplugin:Backend",
    )
    return marker


def test_naive_entry_point_loading_imports_a_planted_plugin(tmp_path: Path) -> None:
    """Proof the planted plugin is real: plain importlib.metadata in its folder imports it."""
    marker = _plant_evil(tmp_path)
    proc = run_python(
        """
        from importlib.metadata import entry_points
        print([ep.load().__name__ for ep in entry_points(group="modelstore.backends")])
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Backend" in proc.stdout and marker.exists()


@pytest.mark.slow
def test_reading_files_never_discovers_plugins(tmp_path: Path) -> None:
    """inspect, scan, load, predict, save and backends() with the model's folder as the working
    directory (first on sys.path) never import a plugin planted there; nor does the CLI."""
    torch = pytest.importorskip("torch")
    marker = _plant_evil(tmp_path)
    torch.save({"w": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.xyz").write_bytes(b"\x00unknown" * 8)
    proc = run_python(
        """
        import sys, warnings
        import modelstore as ms
        warnings.simplefilter("ignore", ms.PickleWarning)
        print(ms.inspect("pytorch_model.bin").format, ms.scan("pytorch_model.bin").verdict)
        print(sorted(ms.load("pytorch_model.bin")))
        calls = [lambda: ms.inspect("model.xyz"), lambda: ms.scan("model.xyz"), lambda: ms.load("model.xyz"),
                 lambda: ms.load("pytorch_model.bin", format="evil"), lambda: ms.save(object(), "x.bin"),
                 lambda: ms.predict(object(), [1.0]), lambda: ms.predict("model.xyz", [1.0])]
        for call in calls:
            try:
                print(type(call()).__name__)
            except ms.ModelstoreError as e:
                print(type(e).__name__)
        print(ms.backends())
        print("evilplugin" in sys.modules)
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "torch safe" and lines[1] == "['w']"
    assert len(lines) == 2 + 7 + 2 and "evil" not in lines[-2] and lines[-1] == "False"
    for command in (["inspect", "pytorch_model.bin"], ["scan", "."], ["inspect", "model.xyz"]):
        subprocess.run(
            [sys.executable, "-m", "modelstore", *command],
            cwd=tmp_path,
            capture_output=True,
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
            timeout=120,
        )
    assert not marker.exists(), "a plugin beside the model ran"


def test_refresh_backends_skips_a_plugin_beside_the_model(tmp_path: Path) -> None:
    """refresh_backends() run in the model's folder skips the planted plugin with a
    BackendWarning saying it is not installed, and never imports it."""
    marker = _plant_evil(tmp_path)
    proc = run_python(
        """
        import sys, warnings
        import modelstore as ms
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(ms.refresh_backends())
        for x in w:
            print(x.category.__name__, x.filename == "<string>", x.message)
        print("evil" in ms.backends(), "evilplugin" in sys.modules)
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[]"
    assert any(
        line.startswith(
            "BackendWarning True modelstore backend plugin evilplugin:Backend was skipped"
        )
        and str(tmp_path / "evilplugin-1.0.dist-info") in line
        and "not in an installed location" in line
        for line in lines[1:-1]
    ), lines
    assert lines[-1] == "False False"
    assert not marker.exists()


def _venv(root: Path) -> tuple[Path, Path]:
    """A fresh virtual environment (no pip): its python and its site-packages."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120
    )
    python = root / "bin" / "python"
    site_dir = next((root / "lib").glob("python3*/site-packages"))
    return python, site_dir


def test_refresh_backends_reads_installed_plugins(tmp_path: Path) -> None:
    """Plugins installed in site-packages load on refresh_backends(), never at import or on a
    file read; broken ones and name clashes become BackendWarnings; built-ins are never
    replaced; a module planted in the working directory under an installed plugin's module
    name is refused, not imported."""
    python, site_dir = _venv(tmp_path / "venv")
    _make_plugin(
        site_dir,
        "goodplug",
        "goodplug_mod",
        """
        from modelstore.backends import Backend
        class Good(Backend):
            name = "good"
            suffixes = (".good",)
            def sniff(self, path, head):
                return head.startswith(b"GOOD")
    """,
        "goodplug_mod:Good",
    )
    _make_plugin(
        site_dir, "badplug", "badplug_mod", "raise RuntimeError('boom')\n", "badplug_mod:X"
    )
    _make_plugin(
        site_dir,
        "clashplug",
        "clashplug_mod",
        """
        from modelstore.backends import Backend
        class Clash(Backend):
            name = "torch"
            suffixes = (".pt",)
    """,
        "clashplug_mod:Clash",
    )
    _make_plugin(site_dir, "shadowplug", "shadowplug_mod", "X = 1\n", "shadowplug_mod:X")
    work = tmp_path / "work"
    work.mkdir()
    (work / "shadowplug_mod.py").write_text(f"open({str(work / 'marker')!r}, 'w').close()\n")
    (work / "f.good").write_bytes(b"GOOD file")
    code = textwrap.dedent("""
        import sys, warnings
        import modelstore as ms
        print("goodplug_mod" in sys.modules)
        try:
            ms.inspect("f.good")
        except ms.FormatError:
            print("unknown before refresh")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(ms.refresh_backends(), ms.refresh_backends())
        for x in w:
            print(x.category.__name__, x.message)
        print(ms.scan("f.good").format)
        from modelstore.pipeline.registry import REGISTRY
        print(type(REGISTRY.get("torch")).__name__)
    """)
    root = Path(ms.__file__).resolve().parent.parent
    proc = subprocess.run(
        [str(python), "-c", code],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:3] == ["False", "unknown before refresh", "['good'] []"], lines
    warned = "\n".join(lines[3:-2])
    assert "'badplug' (badplug_mod:X) failed to load: RuntimeError: boom" in warned
    assert "clashplug_mod:Clash is named 'torch', which is taken" in warned
    assert (
        "refused to import shadowplug_mod" in warned and str(work / "shadowplug_mod.py") in warned
    )
    assert lines[-2:] == ["good", "TorchBackend"]
    assert not (work / "marker").exists()
