"""Red-team findings against the ``.pt2`` reader (round 5; boosted trees: test_redteam3_gbm.py).

Each test builds one hostile file from a benign one, first proves in a subprocess that it
misbehaves under the naive loader (``torch.export.load``, then ``.module()`` and one call),
then that modelstore refuses it from every entry point. Payloads are harmless: a marker file
in a temp folder, a canary file the test wrote, an allocation measured in a child process.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

import modelstore as ms  # noqa: E402
from tests.hang import GO, run_or_hang  # noqa: E402

from . import pt2_hostile as h  # noqa: E402


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


#: prints the child's own peak memory in KiB (VmHWM: ru_maxrss would include the parent's,
#: which Linux carries across exec)
PEAK = (
    "print('peak', next(line.split()[1] for line in open('/proc/self/status') "
    "if line.startswith('VmHWM')))\n"
)


def naive(path: Path, code: str = "") -> subprocess.CompletedProcess[str]:
    """``torch.export.load`` + ``.module()`` + one call, in a child; ``code`` runs after."""
    script = (
        "import sys, torch\n"
        "out = None\n"
        "try:\n"
        "    out = torch.export.load(sys.argv[1]).module()(torch.randn(3, 4))\n"
        "except Exception as e:\n"
        "    print('failed', type(e).__name__)\n" + code
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=240,
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: Any) -> Path:
    return h.benign(tmp_path_factory.mktemp("rt3") / "benign.pt2")


# -- 1. torch's zip reader finds records ignoring case ------------------------------------
def case_folded_inputs(src: Path, dst: Path, marker: Path) -> Path:
    """``data/sample_inputs/model.pt`` replaced by ``data/sample_inputs/MODEL.pt`` holding a
    payload: modelstore looked the record up by its exact name, found none and checked
    nothing; miniz (torch's reader) folds case and torch.load-s it, retrying with
    ``weights_only=False``."""
    with zipfile.ZipFile(src) as zin:
        root = zin.namelist()[0].partition("/")[0]
        items = [(i.filename.partition("/")[2], zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w") as zout:
        for rel, data in items:
            if rel == "data/sample_inputs/model.pt":
                rel, data = "data/sample_inputs/MODEL.pt", h.torch_bytes(((h.Payload(marker),), {}))
            zout.writestr(f"{root}/{rel}", data)
    return dst


def case_twins(src: Path, dst: Path, marker: Path) -> Path:
    """Two programs whose names differ only in case: torch's reader cannot tell their
    records apart."""
    with zipfile.ZipFile(src) as zin:
        program = zin.read(next(n for n in zin.namelist() if n.endswith("models/model.json")))
    return h.rewrite(src, dst, add={"models/MODEL.json": program})


# -- 2. an empty raw record becomes torch.zeros(declared sizes) ----------------------------
ROWS = 50_000_000  # x 4 float32 = 800 MB from a file of a few KB


def empty_record(src: Path, dst: Path, marker: Path | None = None, rows: int = ROWS) -> Path:
    def edit(doc: dict[str, Any]) -> None:
        meta = doc["config"]["l.weight"]["tensor_meta"]
        meta["sizes"] = [{"as_int": rows}, {"as_int": 4}]

    return h.rewrite(
        src,
        dst,
        change={"data/weights/weight_0": b""},
        edit_json={"data/weights/model_weights_config.json": edit},
    )


# -- 3. an operator passed as an argument is resolved and called ---------------------------
def operator_argument(src: Path, dst: Path, canary: Path, size: int) -> Path:
    """``wrap_with_set_grad_enabled(False, aten.from_file.default, canary, False, size,
    dtype=uint8)`` as the program's output: the allowed higher-order operator calls the
    operator argument, which the check did not look at, and predict returns the file."""

    def edit(doc: dict[str, Any]) -> None:
        g = doc["graph_module"]["graph"]

        def arg(kind: str, value: Any, name: str = "", k: int = 1) -> dict[str, Any]:
            return {"name": name, "arg": {kind: value}, "kind": k}

        g["nodes"].append(
            {
                "target": "torch.ops.higher_order.wrap_with_set_grad_enabled",
                "inputs": [
                    arg("as_bool", False),
                    arg("as_operator", "torch.ops.aten.from_file.default"),
                    arg("as_string", str(canary)),
                    arg("as_bool", False),
                    arg("as_int", size),
                    arg("as_scalar_type", 1, "dtype", 2),
                ],
                "outputs": [{"as_tensor": {"name": "evil"}}],
                "metadata": {},
                "is_hop_single_tensor_return": True,
                "name": "evil",
            }
        )
        meta = copy.deepcopy(g["tensor_values"]["relu"])
        meta.update(dtype=1, sizes=[{"as_int": size}], strides=[{"as_int": 1}])
        meta["requires_grad"] = False
        g["tensor_values"]["evil"] = meta
        g["outputs"] = [{"as_tensor": {"name": "evil"}}]
        spec = {"user_output": {"arg": {"as_tensor": {"name": "evil"}}}}
        doc["graph_module"]["signature"]["output_specs"] = [spec]

    return h.rewrite(src, dst, edit_json={"models/model.json": edit})


def refused_everywhere(path: Path) -> None:
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
    else:
        assert info.executes_code and info.globals, info


@pytest.mark.slow
def test_case_folded_record_fires_under_torch(source: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    naive(case_folded_inputs(source, tmp_path / "case.pt2", marker))
    assert marker.exists()


def test_case_folded_record_is_checked(source: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = case_folded_inputs(source, tmp_path / "case.pt2", marker)
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "posix.system" in str(e.value)
    assert not marker.exists()


def test_names_differing_only_in_case_are_refused(source: Path, tmp_path: Path) -> None:
    path = case_twins(source, tmp_path / "twins.pt2", tmp_path / "marker")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "differ only in case" in str(e.value)


@pytest.mark.slow
def test_empty_record_allocates_under_torch(source: Path, tmp_path: Path) -> None:
    path = empty_record(source, tmp_path / "empty.pt2")
    assert path.stat().st_size < 64 << 10
    out = naive(
        path,
        PEAK,
    )
    peak_kib = int(out.stdout.split("peak")[-1])
    assert peak_kib > (ROWS * 4 * 4) >> 10, out.stdout  # the 800 MB of zeros were made


def test_empty_record_declaring_a_tensor_is_refused(source: Path, tmp_path: Path) -> None:
    path = empty_record(source, tmp_path / "empty.pt2")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "is empty" in str(e.value) and "weight_0" in str(e.value)


@pytest.mark.slow
def test_operator_argument_reads_a_file_under_torch(source: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"CANARY-SECRET")
    path = operator_argument(source, tmp_path / "read.pt2", canary, 13)
    out = naive(path, "print('got', bytes(out.tolist()))\n")
    assert "got b'CANARY-SECRET'" in out.stdout, out.stdout + out.stderr


def test_operator_argument_is_checked_as_a_target(source: Path, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_bytes(b"CANARY-SECRET")
    path = operator_argument(source, tmp_path / "read.pt2", canary, 13)
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.predict(path, np.zeros((3, 4), np.float32))
    assert "from_file" in str(e.value)


# -- 4. aten operators that do not check their arguments -----------------------------------
def unchecked_view(src: Path, dst: Path, marker: Path | None = None) -> Path:
    """``aten._reshape_alias(relu, [10**6], [1000]).sum()``: a view nobody bounds-checks,
    read far outside a 12-byte storage (SIGSEGV when the program runs)."""

    def edit(doc: dict[str, Any]) -> None:
        g = doc["graph_module"]["graph"]

        def node(target: str, name: str, inputs: list[tuple[str, Any]]) -> dict[str, Any]:
            return {
                "target": target,
                "inputs": [{"name": k, "arg": v, "kind": 1} for k, v in inputs],
                "outputs": [{"as_tensor": {"name": name}}],
                "metadata": {},
                "is_hop_single_tensor_return": None,
                "name": name,
            }

        n = 10**6
        g["nodes"].append(
            node(
                "torch.ops.aten._reshape_alias.default",
                "evil",
                [
                    ("self", {"as_tensor": {"name": "relu"}}),
                    ("size", {"as_ints": [n]}),
                    ("stride", {"as_ints": [1000]}),
                ],
            )
        )
        g["nodes"].append(
            node("torch.ops.aten.sum.default", "total", [("self", {"as_tensor": {"name": "evil"}})])
        )
        for name, sizes, strides in (("evil", [n], [1000]), ("total", [], [])):
            meta = copy.deepcopy(g["tensor_values"]["relu"])
            meta.update(sizes=[{"as_int": d} for d in sizes])
            meta.update(strides=[{"as_int": d} for d in strides])
            g["tensor_values"][name] = meta
        g["outputs"] = [{"as_tensor": {"name": "total"}}]
        spec = {"user_output": {"arg": {"as_tensor": {"name": "total"}}}}
        doc["graph_module"]["signature"]["output_specs"] = [spec]

    return h.rewrite(src, dst, edit_json={"models/model.json": edit})


@pytest.mark.slow
def test_unchecked_view_crashes_torch(source: Path, tmp_path: Path) -> None:
    out = naive(unchecked_view(source, tmp_path / "alias.pt2"))
    assert out.returncode < 0, (out.returncode, out.stdout, out.stderr[-2000:])


def test_unchecked_view_is_refused(source: Path, tmp_path: Path) -> None:
    path = unchecked_view(source, tmp_path / "alias.pt2")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.predict(path, np.zeros((3, 4), np.float32))
    assert "_reshape_alias" in str(e.value)


SPARSE = (
    "torch.ops.aten.sparse_coo_tensor.indices_size(torch.tensor([[10**9]]), torch.ones(1), [3])"
)


@pytest.mark.slow
def test_sparse_constructor_crashes_torch() -> None:
    code = f"import torch\nprint({SPARSE}.to_dense())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert out.returncode < 0, out


@pytest.mark.parametrize(
    "target",
    [
        "torch.ops.aten.sparse_coo_tensor.indices_size",
        "torch.ops.aten._sparse_coo_tensor_unsafe.default",
        "torch.ops.aten._sparse_csr_tensor_unsafe.default",
        "torch.ops.aten._reshape_alias_copy.default",
    ],
)
def test_unchecked_operators_are_refused(target: str) -> None:
    from modelstore.security.pt2graph import GraphCheck, check_target

    out = GraphCheck()
    check_target(target, out)
    assert out.problems and not out.problems[0][2], out.problems


# -- 5. a loop whose condition the file decides --------------------------------------------
class Loop(torch.nn.Module):
    def forward(self, x: Any) -> Any:
        from torch._higher_order_ops.while_loop import while_loop

        def cond(i: Any, x: Any) -> Any:
            return i < 3

        def body(i: Any, x: Any) -> Any:
            return i + 1, x + 1

        return while_loop(cond, body, (torch.tensor(0), x))[1]


def endless_loop(folder: Path) -> Path:
    """A ``while_loop`` torch.export wrote, its condition ``i < 3`` edited to ``i < 2**62``:
    ``predict`` never returns."""
    src = folder / "loop.pt2"
    torch.export.save(torch.export.export(Loop(), (torch.randn(3, 4),)), str(src))

    def edit(doc: dict[str, Any]) -> None:
        loops = [n for n in doc["graph_module"]["graph"]["nodes"] if "while_loop" in n["target"]]
        cond = loops[0]["inputs"][0]["arg"]["as_graph"]["graph"]["nodes"][0]
        assert cond["target"] == "torch.ops.aten.lt.Scalar", cond
        cond["inputs"][1]["arg"] = {"as_int": 2**62}

    return h.rewrite(src, folder / "endless.pt2", edit_json={"models/model.json": edit})


@pytest.mark.slow
def test_endless_loop_hangs_torch(tmp_path: Path) -> None:
    path = endless_loop(tmp_path)
    script = (
        "import sys, torch\n"
        "m, x = torch.export.load(sys.argv[1]).module(), torch.randn(3, 4)\n"
        f"{GO}\n"
        "m(x)\n"
    )
    assert run_or_hang([sys.executable, "-c", script, str(path)], env=_env()) is None


def test_endless_loop_is_refused_unless_trusted_by_name(tmp_path: Path) -> None:
    path = endless_loop(tmp_path)
    refused_everywhere(path)
    name = "torch.ops.higher_order.while_loop"
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert e.value.untrusted == [name]
    assert ms.load(path, trust=[name]) is not None  # loading runs nothing; predict would


# -- 6. operators that change the state of the calling process -----------------------------
def reseeding(src: Path, dst: Path, marker: Path | None = None) -> Path:
    """``aten.manual_seed(1234)`` as the program's first node: running it reseeds the
    caller's global random generator (what the caller draws next is known to the file)."""

    def edit(doc: dict[str, Any]) -> None:
        node = {
            "target": "torch.ops.aten.manual_seed.default",
            "inputs": [{"name": "seed", "arg": {"as_int": 1234}, "kind": 1}],
            "outputs": [],
            "metadata": {},
            "is_hop_single_tensor_return": None,
            "name": "seeded",
        }
        doc["graph_module"]["graph"]["nodes"].insert(0, node)

    return h.rewrite(src, dst, edit_json={"models/model.json": edit})


@pytest.mark.slow
def test_reseeding_program_reseeds_the_caller_under_torch(source: Path, tmp_path: Path) -> None:
    code = (
        "drawn = torch.rand(4)\n"
        "torch.manual_seed(1234)\n"
        "print('reseeded', torch.equal(drawn, torch.rand(4)))\n"
    )
    out = naive(reseeding(source, tmp_path / "seed.pt2"), code)
    assert "reseeded True" in out.stdout, out.stdout + out.stderr[-2000:]


def test_process_state_operators_are_refused(source: Path, tmp_path: Path) -> None:
    path = reseeding(source, tmp_path / "seed.pt2")
    refused_everywhere(path)
    with pytest.raises(ms.UnsafeModelError) as e:
        ms.load(path)
    assert "manual_seed" in str(e.value) and "process-wide" in str(e.value)
