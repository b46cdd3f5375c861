"""The package's layout: small rooms (docs/architecture.md, "Layers"; STYLE.md habit 6)."""

from __future__ import annotations

from pathlib import Path

import modelstore

PACKAGE = Path(modelstore.__file__).parent
#: The most lines a module of ours may have (after `ruff format`).
MAX_LINES = 400
#: Data written by tools, not code to read: their generators' tests compare them byte for byte.
GENERATED = {
    "security/kerasnames.py",  # python -m modelstore.security._kerasgen
    "security/allowlist_sklearn.py",  # tools/gen_sklearn_allowlist.py
}


def _lines() -> dict[str, int]:
    return {
        p.relative_to(PACKAGE).as_posix(): len(p.read_text(encoding="utf-8").splitlines())
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def test_no_module_is_over_the_line_limit() -> None:
    """Every module that is not generated data holds at most MAX_LINES lines."""
    over = {name: n for name, n in _lines().items() if n > MAX_LINES and name not in GENERATED}
    assert not over, (
        f"modules over {MAX_LINES} lines: {over}; split each into coherent modules beside it "
        f"(docs/architecture.md lists them)"
    )


def test_the_exceptions_are_still_needed() -> None:
    """Every listed exception exists (else its entry is stale and must go)."""
    missing = sorted(GENERATED - set(_lines()))
    assert not missing, f"listed but not in the package: {missing}"
