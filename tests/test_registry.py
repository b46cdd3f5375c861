"""The backend registry: the built-in table, suffixes, sniffing, register(), plugins."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import modelstore as ms
from modelstore._registry import BUILTIN, REGISTRY
from modelstore.backends import Backend
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


def test_entry_point_plugins_read_on_first_miss(tmp_path: Path) -> None:
    """Plugins load from entry points on the first miss, never at import; broken ones and
    name clashes become BackendWarnings; built-ins are never replaced."""
    _make_plugin(tmp_path, "goodplug", "goodplug_mod", """
        from modelstore.backends import Backend
        class Good(Backend):
            name = "good"
            suffixes = (".good",)
            def sniff(self, path, head):
                return head.startswith(b"GOOD")
    """, "goodplug_mod:Good")
    _make_plugin(tmp_path, "badplug", "badplug_mod", "raise RuntimeError('boom')\n", "badplug_mod:X")
    _make_plugin(tmp_path, "clashplug", "clashplug_mod", """
        from modelstore.backends import Backend
        class Clash(Backend):
            name = "torch"
            suffixes = (".pt",)
    """, "clashplug_mod:Clash")
    (tmp_path / "f.good").write_bytes(b"GOOD file")
    proc = run_python(f"""
        import sys, warnings
        sys.path.insert(0, {str(tmp_path)!r})
        import modelstore as ms
        print('goodplug_mod' in sys.modules)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(ms.scan({str(tmp_path / 'f.good')!r}).format)
        print(sorted(str(x.message).split(' ')[3] for x in w if issubclass(x.category, ms.BackendWarning)))
        from modelstore._registry import REGISTRY
        print(type(REGISTRY.get('torch')).__name__)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "False"           # not read at import
    assert lines[1] == "good"            # found on the first miss
    assert "'badplug'" in lines[2]       # broken plugin: a warning, not a crash
    assert "clashplug_mod:Clash" in lines[2]  # name clash: a warning
    assert lines[3] == "TorchBackend"    # the built-in stays
