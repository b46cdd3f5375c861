"""Hostile ONNX files: external data hidden where a checker of graph initializers never looks.

Each file reads a canary (16 bytes outside the model's folder) through external data. The
files a plain ``onnxruntime.InferenceSession`` really leaks the canary through are first shown
to do so; every file is then refused by every entry point, with no canary in any output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

import modelstore as ms  # noqa: E402
from modelstore.formats.onnx import backend as onnx_  # noqa: E402
from modelstore.security import onnxfile  # noqa: E402
from tests import cli_batch  # noqa: E402

CANARY = b"CANARY-SECRET-12"  # four float32 values
X = np.zeros(4, np.float32)
VEC = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("x", "y")]
OPSET = [helper.make_opsetid("", 17)]


def ext(
    name: str,
    entries: tuple[tuple[str, str], ...] = (
        ("location", "data.bin"),
        ("offset", "0"),
        ("length", "16"),
    ),
) -> Any:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for key, value in entries:
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def sparse(values: Any) -> Any:
    return helper.make_sparse_tensor(
        values, helper.make_tensor("i", TensorProto.INT64, [4], [0, 1, 2, 3]), [4]
    )


def model(
    nodes: list[Any],
    *,
    functions: list[Any] | None = None,
    sparse_init: Any = None,
    domains: tuple[str, ...] = (),
) -> Any:
    graph = helper.make_graph(nodes, "g", [VEC[0]], [VEC[1]])
    if sparse_init is not None:
        graph.sparse_initializer.append(sparse_init)
    opsets = OPSET + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets, functions=functions or [])


def in_function(node: Any) -> Any:
    fn = helper.make_function(
        "local", "Leak", ["x"], ["y"], [node, helper.make_node("Add", ["x", "c"], ["y"])], OPSET
    )
    return model(
        [helper.make_node("Leak", ["x"], ["y"], domain="local")], functions=[fn], domains=("local",)
    )


def function_sparse_constant() -> Any:
    return in_function(helper.make_node("Constant", [], ["c"], sparse_value=sparse(ext("v"))))


def function_constant() -> Any:
    return in_function(helper.make_node("Constant", [], ["c"], value=ext("v")))


def graph_sparse_constant() -> Any:
    return model(
        [
            helper.make_node("Constant", [], ["c"], sparse_value=sparse(ext("v"))),
            helper.make_node("Add", ["x", "c"], ["y"]),
        ]
    )


def sparse_initializer() -> Any:
    return model([helper.make_node("Add", ["x", "sp"], ["y"])], sparse_init=sparse(ext("sp")))


def if_branch() -> Any:
    out = helper.make_tensor_value_info("t", TensorProto.FLOAT, [4])
    then = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["t"])], "then", [], [out], initializer=[ext("w")]
    )
    other = helper.make_graph([helper.make_node("Identity", ["x"], ["t"])], "else", [], [out])
    cond = helper.make_tensor("c", TensorProto.BOOL, [], [True])
    return model(
        [
            helper.make_node("Constant", [], ["cond"], value=cond),
            helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other),
        ]
    )


def loop_body() -> Any:
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["k"], value=ext("k")),
            helper.make_node("Identity", ["c_in"], ["c_out"]),
            helper.make_node("Identity", ["k"], ["out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
        ],
        [
            helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [4]),
        ],
    )
    return model(
        [
            helper.make_node(
                "Constant", [], ["n"], value=helper.make_tensor("n", TensorProto.INT64, [], [1])
            ),
            helper.make_node(
                "Constant", [], ["go"], value=helper.make_tensor("g", TensorProto.BOOL, [], [True])
            ),
            helper.make_node("Loop", ["n", "go"], ["y"], body=body),
        ]
    )


def function_attribute_default() -> Any:
    fn = helper.make_function(
        "local",
        "Leak",
        ["x"],
        ["y"],
        [helper.make_node("Identity", ["x"], ["y"])],
        OPSET,
        attributes=[],
    )
    fn.attribute_proto.append(helper.make_attribute("w", ext("w")))
    return model(
        [helper.make_node("Leak", ["x"], ["y"], domain="local")], functions=[fn], domains=("local",)
    )


def training_info() -> Any:
    m = model([helper.make_node("Identity", ["x"], ["y"])])
    info = m.training_info.add()
    info.initialization.CopyFrom(helper.make_graph([], "init", [], [], initializer=[ext("t")]))
    return m


def initializer_with(entries: tuple[tuple[str, str], ...]) -> Callable[[], Any]:
    def build() -> Any:
        graph = helper.make_graph(
            [helper.make_node("Add", ["x", "w"], ["y"])],
            "g",
            [VEC[0]],
            [VEC[1]],
            initializer=[ext("w", entries)],
        )
        return helper.make_model(graph, opset_imports=OPSET)

    return build


@dataclass
class OnnxHostile:
    name: str
    build: Callable[[], Any]
    link: (
        str  # how data.bin reaches the canary: "hardlink", "symlink", "fifo", "copy" (entries lie)
    )
    leaks: bool  # plain onnxruntime 1.32 returns the canary (older versions leaked more)


CORPUS = [
    OnnxHostile("function_sparse_constant_hardlink", function_sparse_constant, "hardlink", True),
    OnnxHostile("function_sparse_constant_symlink", function_sparse_constant, "symlink", False),
    OnnxHostile("function_constant_hardlink", function_constant, "hardlink", True),
    OnnxHostile("graph_sparse_constant_hardlink", graph_sparse_constant, "hardlink", True),
    OnnxHostile("sparse_initializer_hardlink", sparse_initializer, "hardlink", True),
    OnnxHostile("if_branch_initializer_symlink", if_branch, "symlink", False),
    OnnxHostile("loop_body_constant_hardlink", loop_body, "hardlink", False),
    OnnxHostile(
        "function_attribute_default_hardlink", function_attribute_default, "hardlink", False
    ),
    OnnxHostile("training_info_initializer_hardlink", training_info, "hardlink", False),
    OnnxHostile("data_file_is_a_fifo", graph_sparse_constant, "fifo", False),
    OnnxHostile(
        "folder_on_the_way_is_a_symlink",
        initializer_with((("location", "sub/data.bin"),)),
        "subdir",
        False,
    ),
    OnnxHostile(
        "unknown_external_data_key",
        initializer_with((("location", "data.bin"), ("basepath", "/"))),
        "copy",
        False,
    ),
    OnnxHostile(
        "repeated_location_key",
        initializer_with((("location", "data.bin"), ("location", "/etc/passwd"))),
        "copy",
        False,
    ),
    OnnxHostile(
        "offset_in_unicode_digits",
        initializer_with((("location", "data.bin"), ("offset", "\u0660"))),
        "copy",
        False,
    ),
    OnnxHostile(
        "location_is_the_model_itself",
        initializer_with((("location", "m.onnx"), ("length", "16"))),
        "copy",
        False,
    ),
    OnnxHostile(
        "length_past_the_end",
        initializer_with((("location", "data.bin"), ("offset", "8"), ("length", "16"))),
        "copy",
        False,
    ),
]
IDS = [h.name for h in CORPUS]


def build(tmp_path: Path, hostile: OnnxHostile) -> Path:
    outside, folder = tmp_path / "outside", tmp_path / "model"
    outside.mkdir(parents=True)
    folder.mkdir()
    secret = outside / "secret"
    secret.write_bytes(CANARY)
    data = folder / "data.bin"
    if hostile.link == "hardlink":
        os.link(secret, data)
    elif hostile.link == "symlink":
        os.symlink(secret, data)
    elif hostile.link == "fifo":
        os.mkfifo(data)
    elif hostile.link == "subdir":
        os.symlink(outside, folder / "sub")
        shutil.copy(secret, outside / "data.bin")
    else:
        shutil.copy(secret, data)
    path = folder / "m.onnx"
    path.write_bytes(hostile.build().SerializeToString())
    return path


def test_leaking_files_leak_under_plain_onnxruntime(tmp_path: Path) -> None:
    """Proof: a plain InferenceSession on each leaking file returns the canary's bytes. Each
    naive load runs in a child process: onnxruntime may also crash on these files (a crash
    of the naive loader is no less a proof that the file is not safe to hand it)."""
    code = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "sys.stdout.write(s.run(None, {'x': np.zeros(4, np.float32)})[0].tobytes().hex())\n"
    )
    for h in CORPUS:
        if h.leaks:
            path = build(tmp_path / h.name, h)
            proc = subprocess.run(
                [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
            )
            crashed = proc.returncode < 0
            assert crashed or bytes.fromhex(proc.stdout.strip()) == CANARY, (
                h.name,
                proc.stderr[-500:],
            )


@pytest.mark.parametrize("hostile", CORPUS, ids=IDS)
def test_every_entry_point_refuses(tmp_path: Path, hostile: OnnxHostile) -> None:
    """scan is unsafe, inspect lists the reference, load / predict / convert / serve refuse,
    also with trust=True (confinement is not a trust matter); no canary anywhere."""
    path = build(tmp_path, hostile)
    report = ms.scan(path)
    assert report.verdict == "unsafe" and report.untrusted[0].startswith("external:"), report
    info = ms.inspect(path)
    assert info.globals and not info.executes_code
    calls: list[Callable[[], Any]] = [
        lambda: ms.load(path),
        lambda: ms.predict(path, X),
        lambda: ms.load(path, trust=True),
        lambda: ms.convert(path, tmp_path / "out.onnx", sample_input=X),
    ]
    if _installed("starlette"):
        from modelstore.serve import create_app

        calls.append(lambda: create_app(str(path)))
    for call in calls:
        with pytest.raises(ms.UnsafeModelError) as e:
            call()
        assert str(path) in str(e.value) and CANARY.decode() not in str(e.value)
    assert CANARY.decode() not in json.dumps(report.to_dict()) + json.dumps(info.to_dict())
    assert not (tmp_path / "out.onnx").exists()


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_cli_refuses_every_hostile_file(tmp_path: Path) -> None:
    """modelstore scan as a subprocess, then inspect / predict of each file (one child runs
    them all, each as ``python -m modelstore`` would): unsafe, listed, refused, no canary."""
    paths = [build(tmp_path / h.name, h) for h in CORPUS]
    x = tmp_path / "x.npy"
    np.save(x, X)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    scan = subprocess.run(
        [sys.executable, "-m", "modelstore", "scan", *map(str, paths), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert scan.returncode == 1 and {r["verdict"] for r in json.loads(scan.stdout)} == {"unsafe"}
    commands = []
    for path in paths:
        commands += [["inspect", str(path), "--json"], ["predict", str(path), "--input", str(x)]]
    results = cli_batch.run(commands, env=env)
    for path, info, pred in zip(paths, results[::2], results[1::2]):
        assert info.returncode == 0 and json.loads(info.stdout)["globals"], path
        assert pred.returncode != 0 and "Traceback" not in pred.stderr, path
        assert CANARY.decode() not in pred.stdout + pred.stderr + info.stdout


def test_walker_finds_tensors_everywhere() -> None:
    """One walk reaches initializers, sparse values and indices, Constant attributes, function
    bodies and attribute defaults, If/Loop bodies and training graphs."""
    for build_model in (
        function_sparse_constant,
        function_constant,
        graph_sparse_constant,
        sparse_initializer,
        if_branch,
        loop_body,
        function_attribute_default,
        training_info,
    ):
        refs = onnxfile.external_refs(build_model())
        assert len(refs) == 1 and refs[0].get("location") == "data.bin", build_model.__name__
    where = onnxfile.external_refs(function_sparse_constant())[0].where
    assert "function local.Leak" in where and "sparse_value" in where


def test_benign_external_data_still_loads(tmp_path: Path) -> None:
    """External data that is a plain file beside the model loads, from the bytes checked."""
    (tmp_path / "data.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    path = tmp_path / "m.onnx"
    path.write_bytes(sparse_initializer().SerializeToString())
    assert ms.scan(path).verdict == "safe"
    np.testing.assert_allclose(ms.predict(ms.load(path), X), [0, 1, 2, 3])


def test_custom_op_domain_never_loads_a_library(tmp_path: Path) -> None:
    """A node of an unknown domain, with metadata naming a shared library: load is a
    FormatError that says so, and no library named by the file is mapped into the process."""
    lib = Path(
        next(
            p
            for p in (
                "/lib/x86_64-linux-gnu/libm.so.6",
                "/usr/lib/x86_64-linux-gnu/libm.so.6",
                "/lib64/libm.so.6",
            )
            if Path(p).exists()
        )
    )
    planted = tmp_path / "libmodelstore_evil_ops.so"
    shutil.copy(lib, planted)
    m = model([helper.make_node("Steal", ["x"], ["y"], domain="evil.ops")], domains=("evil.ops",))
    onnx.helper.set_model_props(
        m, {"custom_op_library": str(planted), "ort_custom_ops": str(planted)}
    )
    path = tmp_path / "m.onnx"
    path.write_bytes(m.SerializeToString())
    assert ms.inspect(path).metadata["custom_domains"] == ["evil.ops"]
    with pytest.raises(ms.FormatError, match="custom-op"):
        ms.load(path)
    assert str(planted) not in Path("/proc/self/maps").read_text()
    source = "".join(p.read_text() for p in Path(onnx_.__file__).parent.parent.rglob("*.py"))
    assert "register_custom_ops_library" not in source


def test_resaving_never_moves_files_out_of_the_folder(tmp_path: Path) -> None:
    """rename_external_data refuses exporter locations that are not plain names beside the model."""
    folder = tmp_path / "out"
    folder.mkdir()
    tmp = folder / "tmp123.onnx"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    bad = initializer_with((("location", f"{tmp.name}/../../victim.txt"),))()
    tmp.write_bytes(bad.SerializeToString())
    with pytest.raises(ms.FormatError, match="plain file name"):
        onnx_.rename_external_data(tmp, folder / "m.onnx")
    assert victim.read_text() == "keep me" and sorted(os.listdir(folder)) == ["tmp123.onnx"]


def test_onnx_version_floor() -> None:
    """The gated path needs onnx >= 1.21 and says how to upgrade."""
    assert onnxfile.require_onnx("1.21.0") is None and onnxfile.require_onnx("1.23.2") is None
    assert "onnx>=1.21" in str(onnxfile.require_onnx("1.20.1"))
