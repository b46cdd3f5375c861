"""Hostile ``torch.export`` archives (``.pt2``): every way one can carry code.

Each archive is a benign one written by ``torch.export.save`` with one record rewritten. Those
a plain ``torch.export.load`` (plus ``.module()`` and one call) really runs a payload from are
first shown to do so in a subprocess (a marker file appears); every archive is then refused by
``load``, ``inspect``, ``scan``, ``predict`` and the CLI, and no marker appears.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402

from . import pt2_hostile as h  # noqa: E402

#: builder -> fires under the naive loader (proved below)
CASES = {
    "sample_inputs": True,  # torch.load retried with weights_only=False
    "pickled_weight": True,  # use_pickle: torch.load(weights_only=False)
    "opaque_constant": True,  # pickle.loads
    "sympy_expr": True,  # sympy.sympify = eval
    "guards": True,  # compiled into .module()
    "callable_target": False,  # torch's verifier refuses it after resolving it; we refuse first
    "custom_op": False,
    "compiled": h.compiler() is not None,  # AOTInductor: dlopen of a shared library
    "extra_pickle": False,
    "escaping": False,
    "symlink": False,
    "bomb": False,
}
DYNAMIC = {"sympy_expr"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory: Any) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pt2src")
    return {
        "static": h.benign(folder / "static.pt2"),
        "dynamic": h.benign(folder / "dynamic.pt2", dynamic=True),
    }


def build(name: str, sources: dict[str, Path], folder: Path) -> tuple[Path, Path]:
    marker = folder / f"marker-{name}"
    src = sources["dynamic" if name in DYNAMIC else "static"]
    path = getattr(h, name)(src, folder / f"{name}.pt2", marker)
    return Path(path), marker


NAIVE = """
import sys, torch
try:
    torch.export.load(sys.argv[1]).module()(torch.randn(3, 4))
except Exception:
    pass
"""


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, fires in CASES.items() if fires])
def test_naive_torch_export_load_runs_the_payload(
    name: str, sources: dict[str, Path], tmp_path: Path
) -> None:
    path, marker = build(name, sources, tmp_path)
    subprocess.run(
        [sys.executable, "-c", NAIVE, str(path)], capture_output=True, env=_env(), timeout=120
    )
    assert marker.exists(), f"{name}: the payload did not fire under torch.export.load"


@pytest.mark.parametrize("name", list(CASES))
def test_every_entry_point_refuses(name: str, sources: dict[str, Path], tmp_path: Path) -> None:
    path, marker = build(name, sources, tmp_path)
    report = ms.scan(path)
    assert report.verdict == "unsafe", report
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert str(path) in str(e.value)
    with pytest.raises(ms.UnsafeModelError):
        ms.predict(path, np.zeros((3, 4), np.float32))
    try:
        info = ms.inspect(path)
    except ms.UnsafeModelError:
        pass
    else:  # inspect describes without running: it must report what was refused
        assert info.executes_code and info.globals, info
    assert not marker.exists()


def test_refusals_name_what_was_found(sources: dict[str, Path], tmp_path: Path) -> None:
    expect = {
        "sample_inputs": "posix.system",
        "opaque_constant": "pickle.loads",
        "sympy_expr": "__import__",
        "guards": "guard code",
        "callable_target": "torch.os.system",
        "custom_op": "torch.ops.myns",
        "compiled": "compiled code",
        "extra_pickle": "extra.pkl",
    }
    for name, words in expect.items():
        path, _ = build(name, sources, tmp_path)
        with pytest.raises(ms.UnsafeModelError) as e:
            ms.load(path)
        assert words in str(e.value), (name, str(e.value))


def test_custom_op_namespace_can_be_trusted_by_name(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    path, _ = build("custom_op", sources, tmp_path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert e.value.untrusted == ["torch.ops.myns"] or "torch.ops.myns" in str(e.value)
    # trusted, the check passes it to torch, which cannot resolve an unregistered operator
    with pytest.raises(ms.IntegrityError):
        ms.load(path, trust=["torch.ops.myns"])


def test_code_is_never_trustable_by_name(sources: dict[str, Path], tmp_path: Path) -> None:
    path, marker = build("guards", sources, tmp_path)
    with pytest.raises(ms.UnsafeModelError):
        ms.load(path, trust=["guards_code", "<stream>"])
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sample_inputs", "sympy_expr", "compiled", "guards"])
def test_cli_refuses(name: str, sources: dict[str, Path], tmp_path: Path) -> None:
    path, marker = build(name, sources, tmp_path)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 4), np.float32))
    for args in (
        ("scan", str(path)),
        ("inspect", str(path)),
        ("predict", str(path), "--input", str(x)),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "modelstore", *args],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )
        if args[0] != "inspect":
            assert out.returncode != 0, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr, out.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "expr",
    [
        "Symbol('s77', positive=True, integer=True)",
        "s0 + 2*s1 - 1",
        "FloorDiv(s0, 2) + Max(s1, 3)",
        "Mod(s0, 4) >= 0",
    ],
)
def test_symbolic_expressions_torch_writes_pass(expr: str) -> None:
    from modelstore.security.pt2graph import check_expr

    assert check_expr(expr) is None


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "Symbol('s0').__class__",
        "s0.func",
        "(lambda: 1)()",
        "Integer(10)**Integer(10)**Integer(10)",
        "[s0][0]",
        "eval('1')",
        "Symbol('a b')",
        'Symbol("x\'\\\\")',
        "1" * 100,
        "s0; s1",
        "s0 if s1 else s2",
    ],
)
def test_symbolic_expressions_that_could_run_code_are_refused(expr: str) -> None:
    from modelstore.security.pt2graph import check_expr

    assert check_expr(expr) is not None


@pytest.mark.parametrize(
    ("target", "allowed"),
    [
        ("torch.ops.aten.linear.default", True),
        ("torch.ops.prims.convert_element_type.default", True),
        ("torch.ops.higher_order.cond", True),
        ("_operator.getitem", True),
        ("torch.sym_max", True),
        ("torch.ops.aten.from_file.default", False),
        ("torch.ops.aten.save.default", False),
        ("torch.ops.aten.linear", False),
        ("torch.ops.higher_order.run_const_graph", False),
        ("_operator.methodcaller", False),
        ("_operatorX.getitem", False),
        ("torch.hub.load", False),
        ("torch.os.system", False),
        ("builtins.exec", False),
        ("#torchbind:ns", False),
        ("math.sqrt.__globals__", False),
    ],
)
def test_node_targets(target: str, allowed: bool) -> None:
    from modelstore.security.pt2graph import GraphCheck, check_target

    out = GraphCheck()
    check_target(target, out)
    assert (not out.problems) is allowed, out.problems
