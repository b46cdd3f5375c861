"""Check what `python -m build` made before anyone installs it.

    python tools/check_dist.py dist/

The wheel must ship the package with ``py.typed``, the licence, the ``modelstore`` command and
the version written in ``modelstore/_version.py``, and nothing else at the top level (no tests,
no examples). The sdist must carry what it takes to run the tests and build the docs. Exits 1
with one line per problem.
"""

from __future__ import annotations

import ast
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

DIST_NAME = "modelstore-safe"
ROOT = Path(__file__).resolve().parent.parent


def source_version() -> str:
    """``__version__`` as written in ``modelstore/_version.py``, read without importing it."""
    tree = ast.parse((ROOT / "modelstore" / "_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise SystemExit("modelstore/_version.py has no __version__")


def check_wheel(path: Path, version: str) -> list[str]:
    problems = []
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        info = next((t for t in tops if t.endswith(".dist-info")), None)
        if info is None:
            return [f"{path.name}: no .dist-info folder"]
        meta = Parser().parsestr(zf.read(f"{info}/METADATA").decode())
        entry_points = (
            zf.read(f"{info}/entry_points.txt").decode()
            if f"{info}/entry_points.txt" in names
            else ""
        )
    extra_tops = tops - {"modelstore", info}
    if extra_tops:
        problems.append(
            f"{path.name}: unexpected top-level entries {sorted(extra_tops)} (tests and examples stay in the sdist)"
        )
    if "modelstore/py.typed" not in names:
        problems.append(
            f"{path.name}: modelstore/py.typed is missing (type checkers would ignore our annotations)"
        )
    if not any(n.startswith(f"{info}/licenses/") and n.endswith("LICENSE") for n in names):
        problems.append(f"{path.name}: the licence is not in {info}/licenses/")
    if any("/tests/" in f"/{n}" or n.endswith("conftest.py") for n in names):
        problems.append(
            f"{path.name}: ships test files: {[n for n in names if 'tests/' in n or 'conftest' in n][:5]}"
        )
    if meta["Name"] != DIST_NAME:
        problems.append(f"{path.name}: distribution name {meta['Name']!r}, expected {DIST_NAME!r}")
    if meta["Version"] != version:
        problems.append(
            f"{path.name}: version {meta['Version']} but modelstore.__version__ is {version}"
        )
    if meta.get("License-Expression") != "Apache-2.0":
        problems.append(
            f"{path.name}: License-Expression is {meta.get('License-Expression')!r}, expected 'Apache-2.0'"
        )
    if "modelstore = modelstore.cli:main" not in entry_points.replace("  ", " "):
        problems.append(f"{path.name}: no `modelstore` console script in entry_points.txt")
    return problems


def check_sdist(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    needed = [
        "pyproject.toml",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "constraints.txt",
        "mkdocs.yml",
        "modelstore/py.typed",
        "tests/conftest.py",
        "tests/test_api.py",
        "examples/quickstart.py",
        "docs/index.md",
        ".ci/run",
    ]
    problems = [
        f"{path.name}: {n} is missing (the sdist must be able to run the tests and build the docs)"
        for n in needed
        if n not in names
    ]
    stray = sorted(n for n in names if "__pycache__" in n or n.endswith(".pyc"))
    if stray:
        problems.append(f"{path.name}: ships bytecode: {stray[:3]}")
    return problems


def main(argv: list[str]) -> int:
    dist = Path(argv[1] if len(argv) > 1 else "dist")
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        print(
            f"{dist}: expected one wheel and one sdist, found {[p.name for p in wheels + sdists]}; "
            f"empty the folder and run `python -m build` again"
        )
        return 1
    version = source_version()
    problems = check_wheel(wheels[0], version) + check_sdist(sdists[0])
    for p in problems:
        print(p)
    if not problems:
        print(f"ok: {wheels[0].name} and {sdists[0].name} (version {version})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
