"""import_trusted: modules come only from the standard library or the installed packages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelstore as ms
from modelstore.security.origin import (
    import_trusted,
    installed_locations,
    trusted_origin,
    untrusted_reason,
)
from modelstore.testing import run_python


def _plant(folder: Path) -> Path:
    """A model folder holding a fractions.py and an sklearn/ package that write a marker on import."""
    marker = folder / "marker"
    touch = f"open({str(marker)!r}, 'a').write(__name__ + '\\n')\n"
    (folder / "fractions.py").write_text(touch)
    (folder / "sklearn").mkdir()
    (folder / "sklearn" / "__init__.py").write_text(touch)
    (folder / "sklearn" / "linear_model.py").write_text(touch)
    return marker


def test_naive_imports_take_the_planted_modules(tmp_path: Path) -> None:
    """Proof the plants are real: a plain import in the model's folder runs them."""
    marker = _plant(tmp_path)
    proc = run_python("import fractions, sklearn.linear_model", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text().split() == ["fractions", "sklearn", "sklearn.linear_model"]


def test_planted_modules_are_refused_and_never_run(tmp_path: Path) -> None:
    """import_trusted refuses a module (or a parent) that would come from the working
    directory, naming the file, and imports nothing from it; trusted_origin agrees."""
    marker = _plant(tmp_path)
    proc = run_python(
        """
        import json, sys
        import modelstore as ms
        from modelstore.security.origin import import_trusted, trusted_origin
        out = {}
        for name in ("fractions", "sklearn", "sklearn.linear_model", "sklearn.base"):
            out[name] = [trusted_origin(name)]
            try:
                import_trusted(name)
                out[name].append("imported")
            except ms.UnsafeModelError as e:
                out[name] += [str(e), e.untrusted]
        out["loaded"] = [m for m in ("fractions", "sklearn") if m in sys.modules]
        print(json.dumps(out))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for name, planted in [
        ("fractions", "fractions.py"),
        ("sklearn", "sklearn/__init__.py"),
        ("sklearn.linear_model", "sklearn/__init__.py"),
        ("sklearn.base", "sklearn/__init__.py"),
    ]:
        trusted, message, untrusted = out[name]
        assert trusted is False and untrusted == [name.split(".")[0]]
        assert str(tmp_path / planted) in message
        assert "outside the standard library and the installed packages" in message
    assert out["loaded"] == []
    assert not marker.exists()


def test_a_planted_module_already_imported_is_not_trusted(tmp_path: Path) -> None:
    """A module in sys.modules counts only if its own file passes: one imported from the
    working directory before is refused."""
    _plant(tmp_path)
    proc = run_python(
        """
        import fractions
        import modelstore as ms
        from modelstore.security.origin import import_trusted
        try:
            import_trusted("fractions")
        except ms.UnsafeModelError as e:
            print("refused", e)
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused") and str(tmp_path / "fractions.py") in proc.stdout


@pytest.mark.slow
def test_installed_and_standard_modules_are_trusted(tmp_path: Path) -> None:
    """Stdlib (source, extension, zip-free), built-in, frozen and site-packages modules pass,
    and trusted_origin imports nothing to decide."""
    proc = run_python(
        """
        import json, sys
        from modelstore.security.origin import import_trusted, trusted_origin, untrusted_reason
        before = "sklearn" in sys.modules
        checks = {n: untrusted_reason(n) for n in ("fractions", "json.decoder", "_decimal", "sys", "os",
                                                   "sklearn.linear_model", "numpy", "numpy.linalg")}
        after = "sklearn" in sys.modules or "fractions" in sys.modules
        mods = [import_trusted(n).__name__ for n in ("fractions", "json.decoder", "sklearn.linear_model")]
        print(json.dumps([before, after, checks, mods, import_trusted("fractions").__file__]))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    before, after, checks, mods, file = json.loads(proc.stdout)
    assert (before, after) == (False, False)
    assert checks == dict.fromkeys(checks), checks
    assert mods == ["fractions", "json.decoder", "sklearn.linear_model"]
    assert "site-packages" not in file and file.endswith("fractions.py")


def test_missing_and_malformed_names() -> None:
    """A module that is not installed is a MissingDependencyError; a malformed name is refused."""
    with pytest.raises(ms.MissingDependencyError, match="no_such_module_xyz"):
        import_trusted("no_such_module_xyz")
    with pytest.raises(ms.MissingDependencyError, match="json.no_such"):
        import_trusted("json.no_such")
    for bad in ("", "a..b", "os.path/x", "1abc"):
        with pytest.raises(ms.UnsafeModelError):
            import_trusted(bad)
        assert not trusted_origin(bad)
    assert (
        untrusted_reason("no_such_module_xyz") == "no module named no_such_module_xyz is installed"
    )


def test_installed_locations_are_the_stdlib_and_site_packages() -> None:
    """The trusted roots hold the stdlib and site-packages folders and no sys.path folder of ours."""
    import site
    import sysconfig

    roots = installed_locations()
    assert str(Path(sysconfig.get_path("purelib")).resolve()) in roots
    assert any(str(Path(p).resolve()) in roots for p in site.getsitepackages())
    assert str(Path(json.__file__).resolve().parent.parent) in roots  # the stdlib folder
    assert str(Path.cwd().resolve()) not in roots
    assert str(Path(__file__).resolve().parents[2]) not in roots  # this checkout


def test_modelstore_itself_is_trusted_from_where_it_runs(tmp_path: Path) -> None:
    """modelstore's own modules pass from the folder the running package came from (a
    checkout on PYTHONPATH too); other modules in that folder do not."""
    import modelstore.security.origin as origin

    assert import_trusted("modelstore.errors") is ms.errors
    assert trusted_origin("modelstore.security.jsonsafe")
    checkout = Path(origin.__file__).resolve().parents[2]
    if not any(str(checkout) == r for r in installed_locations()):
        assert (
            origin._spec_problem("fractions", _spec_at(checkout / "fractions.py", "fractions"))
            is not None
        )


def _spec_at(path: Path, name: str):  # type: ignore[no-untyped-def]
    import importlib.util

    return importlib.util.spec_from_file_location(name, path)
