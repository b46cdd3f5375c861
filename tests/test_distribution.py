"""The published distribution: its name, its version, and install hints that name it."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, metadata
from pathlib import Path

import pytest

import modelstore as ms

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "modelstore-safe"
# `pip install "modelstore[x]"` installs an unrelated project's distribution, not ours
WRONG_HINT = re.compile(r"""pip install ["']?modelstore\[""")


def test_installed_distribution_is_ours() -> None:
    """The installed distribution is modelstore-safe, at modelstore.__version__, with the command."""
    try:
        meta = metadata(DIST_NAME)
    except PackageNotFoundError:
        pytest.skip(f"{DIST_NAME} is not installed (run from a source tree without an install)")
    assert meta["Name"] == DIST_NAME
    assert meta["Version"] == ms.__version__
    assert meta["License-Expression"] == "Apache-2.0"


def test_version_is_single_sourced() -> None:
    """pyproject.toml reads the version from modelstore/_version.py and writes none of its own."""
    text = (ROOT / "pyproject.toml").read_text()
    assert f'name = "{DIST_NAME}"' in text
    assert 'dynamic = ["version"]' in text and 'attr = "modelstore._version.__version__"' in text
    assert not re.search(r'(?m)^version\s*=\s*"', text)  # no literal version beside it


def test_package_version_is_the_version_module() -> None:
    """modelstore.__version__ is the one written in modelstore/_version.py."""
    from modelstore import _version

    assert ms.__version__ == _version.__version__


def test_docs_and_examples_name_our_distribution() -> None:
    """README, docs and examples never tell users to install the other `modelstore` distribution."""
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "examples").glob("*.py")),
    ]
    wrong = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if WRONG_HINT.search(line)
    ]
    assert wrong == []


def test_error_hints_name_our_distribution() -> None:
    """MissingDependencyError messages and docstrings say `pip install "modelstore-safe[extra]"`."""
    wrong = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in sorted((ROOT / "modelstore").rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if WRONG_HINT.search(line)
    ]
    assert wrong == []


def test_api_reference_covers_the_public_surface() -> None:
    """docs/api.md documents every name in modelstore.__all__ (errors through modelstore.errors)."""
    from modelstore import errors

    api = (ROOT / "docs" / "api.md").read_text()
    names = set(ms.__all__) - set(errors.__all__) - {"__version__"}
    missing = sorted(
        n for n in names if f"::: modelstore.{n}\n" not in api and f"`ms.{n}()`" not in api
    )
    assert missing == []
    assert "::: modelstore.errors\n" in api
