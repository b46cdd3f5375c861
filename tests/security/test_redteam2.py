"""Red-team findings against the restructured core and its new features (round 4):
``stats``/``summary``/``plot_weights``, ``scan --format sarif``, folders and alternative names,
and the plugin API.

Each test builds one hostile input, first proves that it misbehaves on the naive path (or that
modelstore itself misbehaves), then states the behaviour modelstore must have. Tests that fail
on the code they were written against are marked ``xfail(strict=True)``: remove the mark with
the fix. Payloads are harmless (a marker file in a temp folder, a canary file the test wrote);
large allocations are only attempted in subprocesses under an address-space limit.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

import modelstore as ms  # noqa: E402
from tests.hostile import P2, _s  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

P4 = b"\x80\x04"


def run_py(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


#: Child prelude: cap the address space at what the process already maps plus ``HEADROOM``
#: bytes, so an allocation of gigabytes fails at once (MemoryError) instead of taking the
#: machine; and a helper that reports how a call ended.
CAPPED = """
    import resource, warnings
    warnings.simplefilter("ignore")
    import modelstore as ms
    def vm_kb(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])
    def cap(headroom):
        limit = vm_kb("VmSize:") * 1024 + headroom
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    def report(name, call):
        try:
            out = call()
            print(name, "RETURNED", len(out) if hasattr(out, "__len__") else out)
        except ms.ModelstoreError as e:
            print(name, "REFUSED", type(e).__name__, str(e)[:200].replace(chr(10), " "))
        except BaseException as e:
            print(name, "ESCAPED", type(e).__name__, str(e)[:200].replace(chr(10), " "))
"""


# -- 1. stats materialises what a tiny torch file only declares --------------------------------


@pytest.mark.slow  # seconds; the full suite runs it
def test_stats_of_a_stride_zero_tensor_does_not_allocate_terabytes(tmp_path: Path) -> None:
    """A 1 KB ``torch.save`` file holds one float and a view of it with shape 10^6 x 10^6 and
    stride (0, 0): a legal tensor, so the weights-only gate loads it without ``trust``. ``stats``
    (and ``plot_weights``, ``inspect --stats``) then copies it to float64: 8 TB. Under a cap the
    allocation fails with a MemoryError that escapes as a foreign exception; without one, on a
    machine that overcommits, the process is killed. Reading the weights must refuse a tensor
    whose element count exceeds what its storage holds (or bound the work), with a
    ModelstoreError."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "expanded.pt"
    torch.save({"w": torch.zeros(1).expand(1_000_000, 1_000_000)}, path)
    assert path.stat().st_size < 4096
    # the naive path: the tensor it loads claims 10^12 elements over 4 bytes of storage
    naive = torch.load(path, weights_only=True)["w"]
    assert naive.numel() == 10**12 and naive.untyped_storage().nbytes() == 4

    r = run_py(
        CAPPED
        + f"""
    cap(1 << 30)
    report("stats", lambda: ms.stats({str(path)!r}))
    report("plot", lambda: ms.plot_weights({str(path)!r}, {str(tmp_path / "w.png")!r}))
    """
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ESCAPED" not in r.stdout, r.stdout
    assert r.stdout.count("REFUSED") == 2 or "RETURNED" in r.stdout, r.stdout


def test_stats_of_an_hdf5_file_full_of_fill_values_is_bounded(tmp_path: Path) -> None:
    """The Keras/HDF5 check refuses one dataset that declares more than MAX_RATIO times what it
    stores, with 1 MiB of slack per dataset. 600 datasets of exactly 1 MiB that store nothing
    pass it one by one: a 200 KB file that ``stats`` turns into 600 MiB of arrays (a 10 000-
    dataset file is 4 MB for 10 GB). The budget must hold for the file as a whole."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "fill.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        g = f.create_group("model_weights")
        for i in range(600):
            g.create_dataset(f"w{i}", shape=(1 << 20,), dtype="u1", chunks=(1 << 16,))
    assert path.stat().st_size < 400_000
    with h5py.File(path, "r") as f:  # the naive path: every dataset reads as 1 MiB of fill
        declared = sum(d.size for d in f["model_weights"].values())
        assert declared == 600 << 20
        assert sum(d.id.get_storage_size() for d in f["model_weights"].values()) == 0

    r = run_py(
        CAPPED
        + f"""
    cap(256 << 20)
    report("stats", lambda: ms.stats({str(path)!r}))
    """
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "REFUSED" in r.stdout, r.stdout


def test_stats_of_an_hdf5_file_with_an_external_link_is_a_modelstore_error(tmp_path: Path) -> None:
    """An HDF5 file whose weights are an external link into another file: the naive read
    (h5py) follows it and returns the other file's data. ``stats`` refused it, but with
    ``KerasFileError``, an internal class that is not a ModelstoreError (and it skipped the
    container checks the scan runs first)."""
    h5py = pytest.importorskip("h5py")
    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.full(4, 1234.5, dtype=np.float32)
    path = tmp_path / "model" / "linked.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f["model_weights/w"] = h5py.ExternalLink(str(other), "/data")
    with h5py.File(path, "r") as f:  # the naive path reads the other file
        assert f["model_weights/w"][()].tolist() == [1234.5] * 4
    with pytest.raises(ms.ModelstoreError):
        ms.stats(path)


# -- 2. stats on ONNX: errors that escape, and a scan of other bytes than the read ---------------


def _onnx_model(path: Path, init: Any) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g", [x], [y], [init])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_stats_of_an_onnx_initializer_shorter_than_its_dims_is_a_modelstore_error(
    tmp_path: Path,
) -> None:
    """An initializer declaring dims [1000] over 4 bytes of raw data: the scan calls the file
    safe, and ``numpy_helper.to_array`` raises ValueError, which ``stats`` let escape."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, numpy_helper

    t = TensorProto()
    t.name, t.data_type = "W", TensorProto.FLOAT
    t.dims.extend([1000])
    t.raw_data = b"\0" * 4
    path = tmp_path / "short.onnx"
    _onnx_model(path, t)
    with pytest.raises(ValueError):  # the naive path
        numpy_helper.to_array(onnx.load(str(path)).graph.initializer[0])
    with pytest.raises(ms.ModelstoreError):
        ms.stats(path)


def test_stats_of_onnx_whose_external_data_onnx_refuses_is_a_modelstore_error(
    tmp_path: Path,
) -> None:
    """External data behind a link that stays inside the model's folder passes the
    confinement check (the scan calls the file safe); ``onnx.load`` (1.21+) refuses any
    symbolic link with its own ``ValidationError``, which ``stats`` let escape."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / "w.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    os.symlink(tmp_path / "blobs" / "w.bin", tmp_path / "data.bin")
    ext = TensorProto()
    ext.name, ext.data_type, ext.data_location = "W", TensorProto.FLOAT, TensorProto.EXTERNAL
    ext.dims.extend([4])
    for k, v in (("location", "data.bin"), ("offset", "0"), ("length", "16")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    path = tmp_path / "model.onnx"
    _onnx_model(path, ext)
    assert ms.scan(path).verdict == "safe"
    with pytest.raises(onnx.checker.ValidationError):  # the naive path
        onnx.load(str(path))
    with pytest.raises(ms.ModelstoreError):
        ms.stats(path)


def test_stats_of_onnx_reads_the_bytes_it_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stats`` (and ``summary``) ask ``scan(p)`` and then call ``onnx.load(p)``: two opens of
    one path, against rule 7 (verify and deserialise the same bytes; ``load`` holds one
    descriptor for both). A file replaced between them (the attacker controls timing) is
    read unscanned. onnx 1.21+ itself refuses ``..``, links and special files in external
    data, so no read outside the folder was found through this window; the report is still
    of bytes nothing checked. Here the swap happens right after the scan returns."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    folder = tmp_path / "model"
    folder.mkdir()
    _onnx_model(
        folder / "model.onnx", helper.make_tensor("W", TensorProto.FLOAT, [4], [1, 2, 3, 4])
    )
    other = tmp_path / "other.onnx"
    _onnx_model(other, helper.make_tensor("W", TensorProto.FLOAT, [4], [1234.5] * 4))

    import onnx

    real_parse = onnx.load_model_from_string
    swapped = []

    def parse_then_swap(data: Any, *a: Any, **kw: Any) -> Any:
        proto = real_parse(data, *a, **kw)
        if not swapped:  # the file is replaced right after the bytes were checked
            swapped.append(True)
            os.replace(shutil.copy(other, folder / "swap.tmp"), folder / "model.onnx")
        return proto

    monkeypatch.setattr(onnx, "load_model_from_string", parse_then_swap)
    try:
        rows = ms.stats(folder / "model.onnx")
    except ms.ModelstoreError:
        return
    assert swapped
    assert all(r.mean != 1234.5 for r in rows), "stats reported weights from bytes it never scanned"


def test_stats_of_a_sharded_checkpoint_reads_its_confined_shards(tmp_path: Path) -> None:
    """``load``, ``inspect`` and ``scan`` take a checkpoint folder (or its index); ``stats``
    picks the index with ``model_file`` and hands it to the single-file safetensors reader,
    which calls the JSON a damaged file. Stats must read the shards the index names, through
    the same confinement check as ``load``."""
    torch = pytest.importorskip("torch")
    folder = tmp_path / "ckpt"
    folder.mkdir()
    sd = {f"w{i}": torch.full((100, 100), float(i)) for i in range(4)}
    ms.save(sd, folder / "model.safetensors", max_shard_size=50_000)
    assert len(ms.load(folder)) == 4
    assert sorted(r.name for r in ms.stats(folder)) == ["w0", "w1", "w2", "w3"]


# -- 3. scan reports: what a file name can do to the report ------------------------------------


@pytest.mark.parametrize("name", ["README.md#.pkl", "a%2F..%2Fsetup.py.pkl", "two words?.pkl"])
def test_sarif_locations_are_uris_of_the_file_scanned(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SARIF ``artifactLocation.uri`` is a URI reference (RFC 3986). The relative path was
    written as is, so a hostile pickle named ``README.md#.pkl`` is reported against
    ``README.md`` (``#`` starts a fragment), ``a%2F..%2Fsetup.py.pkl`` against ``a/../setup.py``
    (a dashboard decodes the escapes) and ``two words?.pkl`` against ``two words``: the alert
    lands on another file. Each path must be percent-encoded."""
    import pickle

    from modelstore.cli.main import main
    from tests.hostile import Reduce

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / name).write_bytes(pickle.dumps(Reduce(os.getcwd)))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert main(["scan", "models", "--format", "sarif"], out=out) == 1
    log = json.loads(out.getvalue())
    run = log["runs"][0]
    uris = [a["location"]["uri"] for a in run["artifacts"]]
    uris += [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in run["results"]
    ]
    assert uris
    for uri in uris:
        parts = urllib.parse.urlsplit(uri)
        assert not parts.scheme and not parts.query and not parts.fragment, uri
        assert urllib.parse.unquote(parts.path) == f"models/{name}", uri


def test_scan_text_report_does_not_pass_control_characters_through(tmp_path: Path) -> None:
    """The text report wrote file names and finding reasons raw. A file name (or a pickle
    global's name, which a ``STACK_GLOBAL`` makes any string) holding a newline forges a
    report line (``ok.safetensors: safe``) and one holding ESC sends terminal escape sequences
    (here: clear the line, a window title) to the CI log or the terminal. Control characters
    must be shown escaped."""
    from modelstore.cli.main import main

    folder = tmp_path / "models"
    folder.mkdir()
    forged = "\nok.safetensors: safe (safetensors)\n"
    (folder / f"evil{forged}\x1b[2K.pkl").write_bytes(P2 + _s("os") + _s("getcwd") + b"\x93)R.")
    name = f"getcwd{forged}\x1b]0;owned\x07"
    (folder / "named.pkl").write_bytes(P4 + _s("os") + _s(name) + b"\x93)R.")
    assert ms.scan(folder / "named.pkl").verdict == "unsafe"
    out = io.StringIO()
    assert main(["scan", str(folder)], out=out) == 1
    text = out.getvalue()
    assert not any(line.startswith("ok.safetensors: safe") for line in text.splitlines()), text
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text, repr(text)


def test_summary_report_does_not_pass_control_characters_through(tmp_path: Path) -> None:
    """``modelstore summary`` prints layer names and types read from the file (ONNX node
    names) in a table: a name holding a newline forges rows, one holding ESC drives the
    terminal. The same rule as the scan report: shown escaped, one row per layer."""
    pytest.importorskip("onnx")
    import onnx
    from onnx import TensorProto, helper

    from modelstore.cli.main import main

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])
    node = helper.make_node(
        "Relu", ["X"], ["Y"], name="relu\x1b]0;owned\x07\nforged  Gemm  1x4  999,999"
    )
    graph = helper.make_graph([node], "g", [x], [y])
    path = tmp_path / "named.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    out = io.StringIO()
    assert main(["summary", str(path)], out=out) == 0
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text, repr(text)
    assert not any(line.startswith("forged") for line in text.splitlines()), text


# -- 4. the plugin API: who counts as a built-in ------------------------------------------------


def test_a_plugin_cannot_claim_builtin_status_by_spelling_its_module(tmp_path: Path) -> None:
    """``gate._declared_safe`` skips the scan for ``risk = "safe"`` backends whose class
    ``__module__`` starts with ``modelstore.formats.``. A class body may assign ``__module__``
    any string, so a plugin that declares ``risk = "safe"`` and spells its module that way
    is never scanned, against the documented rule (``modelstore.backends``: a plugin that
    declares itself safe is still scanned). The same spelling test picks the pickle fast
    path (``checks_while_loading``). Built-in status must be identity: the registry's own
    built-in instance or class, not a name."""
    from modelstore.backends import Backend, Inspection
    from modelstore.pipeline.registry import REGISTRY

    marker = tmp_path / "marker"

    class Spelled(Backend):
        __module__ = "modelstore.formats.spelled"
        name = "spelled"
        suffixes = (".spelled",)
        risk = "safe"

        def sniff(self, path: Path, head: bytes) -> bool:
            return head.startswith(b"SPEL")

        def scan(self, path: Path) -> ms.ScanReport:
            return ms.ScanReport(
                str(path), self.name, "unsafe", [ms.Finding("builtins.exec", "critical", "code")]
            )

        def load(self, path: Path, request: Any) -> Any:
            marker.write_text(
                "loaded unscanned"
            )  # stands for a deserialiser run on unscanned bytes
            return {}

        def inspect(self, path: Path) -> Inspection:
            return Inspection(framework=None)

    ms.register(Spelled)
    try:
        (tmp_path / "m.spelled").write_bytes(b"SPEL....")
        assert ms.scan(tmp_path / "m.spelled").verdict == "unsafe"
        with pytest.raises(ms.UnsafeModelError):
            ms.load(tmp_path / "m.spelled")
        assert not marker.exists()
    finally:
        REGISTRY.unregister("spelled")


# -- 5. the new readers on the gadget pickles of round 2 -----------------------------------------


@pytest.mark.slow  # seconds; the full suite runs it
def test_stats_and_summary_on_gadget_pickles_refuse_without_crashing(tmp_path: Path) -> None:
    """The allow-listed gadgets (trees with children past their node array, sparse indices out
    of range, a RandomState past its key, a Fraction parse that never ends, a 3 GiB bytes, a
    frame overrun, a second pickle after STOP) through ``stats``, ``plot_weights`` and
    ``summary``: the weights readers walk estimator attributes, so a gadget the load let
    through would crash here. Each call ends in a ModelstoreError or a result, in a child
    capped at 1 GiB more than it maps, with no marker."""
    pytest.importorskip("sklearn")
    from tests import hostile_pickles as hp

    marker = tmp_path / "marker"
    files = {
        "tree_oob.pkl": hp.tree_with_bad_children("oob"),
        "tree_cycle.pkl": hp.tree_with_bad_children("cycle"),
        "sparse.pkl": hp.sparse_coef_out_of_range(),
        "randomstate.pkl": hp.randomstate_position(),
        "fraction.pkl": hp.fraction_hang(),
        "huge_bytes.pkl": hp.huge_bytes(),
        "frame_overrun.pkl": hp.frame_overrun(marker),
        "second_pickle.pkl": hp.second_pickle_after_stop(marker),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    calls = "\n".join(
        f"    report({name!r} + ' ' + {fn!r}, lambda: ms.{fn}({str(tmp_path / name)!r}{extra}))"
        for name in files
        for fn, extra in (
            ("stats", ""),
            ("summary", ""),
            ("plot_weights", f", {str(tmp_path / 'w.png')!r}"),
        )
    )
    r = run_py(CAPPED + "    cap(1 << 30)\n" + calls, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ESCAPED" not in r.stdout, r.stdout
    assert r.stdout.count("\n") == 3 * len(files), r.stdout
    assert not marker.exists()
