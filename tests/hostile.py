"""A corpus of hostile model files. Each payload is harmless: it only creates a marker file.

Every entry says how a *naive* loader would open it (``pickle``, ``joblib``, ``torch``), so
the tests can prove each file really is hostile (a naive load in a subprocess creates the
marker) and that modelstore refuses it (no marker).
"""

from __future__ import annotations

import io
import marshal
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _s(text: str) -> bytes:
    """BINUNICODE."""
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _b(data: bytes) -> bytes:
    """BINBYTES."""
    return b"B" + struct.pack("<I", len(data)) + data


def _g(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, *args: bytes) -> bytes:
    return func + b"(" + b"".join(args) + b"tR"


P2 = b"\x80\x02"


def touch_cmd(marker: Path) -> str:
    return f"touch {marker}"


def py_touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


class Reduce:
    """An object whose unpickling calls ``func(*args)``."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> Any:
        return (self.func, self.args)


@dataclass
class Hostile:
    name: str
    suffix: str
    naive: str | None  # pickle | joblib | torch; None: no naive loader reads the payload
    build: Callable[[Path, Path], None]  # (path, marker) -> writes path


def raw(fn: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        path.write_bytes(fn(marker))

    return build


def dumped(fn: Callable[[Path], Any], protocol: int = 4) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        path.write_bytes(pickle.dumps(fn(marker), protocol=protocol))

    return build


def joblib_dumped(fn: Callable[[Path], Any], compress: Any = 0) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        import joblib

        joblib.dump(fn(marker), path, compress=compress)

    return build


def torch_saved(fn: Callable[[Path], Any], legacy: bool = False) -> Callable[[Path, Path], None]:
    def build(path: Path, marker: Path) -> None:
        import torch

        torch.save(fn(marker), path, _use_new_zipfile_serialization=not legacy)

    return build


def _system(m: Path) -> Any:
    return Reduce(os.system, touch_cmd(m))


def _code_bytes(m: Path) -> bytes:
    return marshal.dumps(compile(py_touch(m), "<payload>", "exec"))


def _stack_global_memo(m: Path) -> bytes:
    # names put in the memo, then fetched with BINGET before STACK_GLOBAL
    return (
        b"\x80\x04"
        + _s("posix")
        + b"q\x00"
        + _s("system")
        + b"q\x01"
        + b"0"  # POP
        + b"h\x00h\x01\x93"
        + _s(touch_cmd(m))
        + b"\x85R."
    )


def _memo_confusion(m: Path) -> bytes:
    # slot 0 first holds 'numpy', is overwritten with 'posix' before use
    return (
        b"\x80\x04"
        + _s("numpy")
        + b"q\x000"
        + _s("posix")
        + b"q\x000"
        + _s("system")
        + b"q\x010"
        + b"h\x00h\x01\x93"
        + _s(touch_cmd(m))
        + b"\x85R."
    )


def _computed_global(m: Path) -> bytes:
    # module name built at unpickling time: str.join over a list -> 'posix'
    join = _call(_g("builtins", "getattr"), _s(""), _s("join"))
    name = join + b"(" + b"](" + _s("pos") + _s("ix") + b"e" + b"tR"
    return b"\x80\x04" + name + _s("system") + b"\x93" + _s(touch_cmd(m)) + b"\x85R."


def _getattr_import(m: Path) -> bytes:
    mod = _call(_g("builtins", "__import__"), _s("os"))
    fn = b"c" + b"builtins\ngetattr\n" + b"(" + mod + _s("system") + b"tR"
    return P2 + fn + b"(" + _s(touch_cmd(m)) + b"tR."


def _inst(m: Path) -> bytes:
    return b"(" + b"S'" + touch_cmd(m).encode() + b"'\n" + b"ios\nsystem\n."


def _obj(m: Path) -> bytes:
    return P2 + b"(" + _g("os", "system") + _s(touch_cmd(m)) + b"o."


def _ext(m: Path) -> bytes:
    import copyreg

    copyreg.add_extension("os", "system", 0xF0)  # the naive loader's process registers it too
    return P2 + b"\x82\xf0" + b"(" + _s(touch_cmd(m)) + b"tR."


def _pydoc_locate(m: Path) -> bytes:
    fn = _call(_g("pydoc", "locate"), _s("os.system"))
    return P2 + fn + b"(" + _s(touch_cmd(m)) + b"tR."


def _pkgutil(m: Path) -> bytes:
    fn = _call(_g("pkgutil", "resolve_name"), _s("os:system"))
    return P2 + fn + b"(" + _s(touch_cmd(m)) + b"tR."


def _importlib(m: Path) -> bytes:
    mod = _call(_g("importlib", "import_module"), _s("os"))
    fn = _g("builtins", "getattr") + b"(" + mod + _s("system") + b"tR"
    return P2 + fn + b"(" + _s(touch_cmd(m)) + b"tR."


def _operator(m: Path) -> bytes:
    caller = _call(_g("operator", "methodcaller"), _s("system"), _s(touch_cmd(m)))
    mod = _call(_g("builtins", "__import__"), _s("os"))
    return P2 + caller + b"(" + mod + b"tR."


def _marshal(m: Path) -> bytes:
    code = _g("marshal", "loads") + b"(" + _b(_code_bytes(m)) + b"tR"
    fn = _g("types", "FunctionType") + b"(" + code + b"}" + b"tR"
    return P2 + fn + b")R."


def _nested(m: Path) -> bytes:
    inner = pickle.dumps(_system(m), protocol=2)
    return P2 + _g("pickle", "loads") + b"(" + _b(inner) + b"tR."


def _runpy(m: Path) -> bytes:
    script = m.with_suffix(".py")
    script.write_text(py_touch(m))
    return P2 + _call(_g("runpy", "run_path"), _s(str(script))) + b"."


def _numpy_save(m: Path) -> bytes:
    arr = _call(_g("numpy", "zeros"), b"K\x01")
    return P2 + _call(_g("numpy", "savetxt"), _s(str(m)), arr) + b"."


def _torch_load_gadget(m: Path) -> Any:
    import functools

    import torch

    inner = m.with_suffix(".inner.pt")
    torch.save(_system(m), inner)
    return Reduce(functools.partial(torch.load, weights_only=False), str(inner))


def _sklearn_function(m: Path) -> bytes:
    # a function (not a class) in scikit-learn that writes files
    X = _call(_g("numpy", "zeros"), b"(K\x01K\x01t")
    y = _call(_g("numpy", "zeros"), b"K\x01")
    return P2 + _call(_g("sklearn.datasets", "dump_svmlight_file"), X, y, _s(str(m))) + b"."


def _open_write(m: Path) -> bytes:
    return P2 + _call(_g("builtins", "open"), _s(str(m)), _s("w")) + b"."


def _exec(m: Path) -> Any:
    return Reduce(exec, py_touch(m))


def _eval(m: Path) -> Any:
    return Reduce(eval, f"__import__('os').system({touch_cmd(m)!r})")


def _subprocess(m: Path) -> Any:
    import subprocess

    return Reduce(subprocess.call, ["touch", str(m)])


def _object_array(m: Path) -> Any:
    import numpy as np

    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = 1, _system(m)
    return {"weights": np.arange(4.0), "extra": arr}


def _in_estimator(m: Path) -> Any:
    from sklearn.linear_model import LogisticRegression

    est = LogisticRegression()
    est.callback = _system(m)  # hidden inside an otherwise normal estimator's state
    return est


def _extra_zip_record(path: Path, marker: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(2)}, path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{path.stem}/extra.pkl", pickle.dumps(_system(marker)))


def _appended_after_zip(path: Path, marker: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(2)}, path)
    with open(path, "ab") as f:
        f.write(pickle.dumps(_system(marker), protocol=2))


def _prepended_to_zip(path: Path, marker: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    path.write_bytes(pickle.dumps(_system(marker), protocol=2) + buf.getvalue())


CORPUS: list[Hostile] = [
    Hostile("os_system_reduce", ".pkl", "pickle", dumped(_system)),
    Hostile("posix_system_proto0", ".pkl", "pickle", dumped(_system, protocol=0)),
    Hostile("subprocess_call", ".pkl", "pickle", dumped(_subprocess)),
    Hostile("builtins_exec", ".pkl", "pickle", dumped(_exec)),
    Hostile("builtins_eval", ".pkl", "pickle", dumped(_eval)),
    Hostile("builtins_open_write", ".pkl", "pickle", raw(_open_write)),
    Hostile("getattr_import_obfuscation", ".pkl", "pickle", raw(_getattr_import)),
    Hostile("stack_global_from_memo", ".pkl", "pickle", raw(_stack_global_memo)),
    Hostile("memo_confusion", ".pkl", "pickle", raw(_memo_confusion)),
    Hostile("stack_global_computed_name", ".pkl", "pickle", raw(_computed_global)),
    Hostile("inst_opcode", ".pkl", "pickle", raw(_inst)),
    Hostile("obj_opcode", ".pkl", "pickle", raw(_obj)),
    Hostile("ext_opcode", ".pkl", "pickle", raw(_ext)),
    Hostile("runpy_run_path", ".pkl", "pickle", raw(_runpy)),
    Hostile("pydoc_locate", ".pkl", "pickle", raw(_pydoc_locate)),
    Hostile("pkgutil_resolve_name", ".pkl", "pickle", raw(_pkgutil)),
    Hostile("importlib_import_module", ".pkl", "pickle", raw(_importlib)),
    Hostile("operator_methodcaller", ".pkl", "pickle", raw(_operator)),
    Hostile("marshal_function", ".pkl", "pickle", raw(_marshal)),
    Hostile("nested_pickle_loads", ".pkl", "pickle", raw(_nested)),
    Hostile("numpy_save_gadget", ".pkl", "pickle", raw(_numpy_save)),
    Hostile("torch_load_gadget", ".pkl", "pickle", dumped(_torch_load_gadget)),
    Hostile("sklearn_function_gadget", ".pkl", "pickle", raw(_sklearn_function)),
    Hostile("joblib_plain", ".joblib", "joblib", joblib_dumped(_system)),
    Hostile("joblib_zlib", ".joblib", "joblib", joblib_dumped(_system, compress=3)),
    Hostile("joblib_gzip", ".joblib", "joblib", joblib_dumped(_system, compress=("gzip", 3))),
    Hostile("joblib_xz", ".joblib", "joblib", joblib_dumped(_system, compress=("xz", 3))),
    Hostile("joblib_object_array", ".joblib", "joblib", joblib_dumped(_object_array)),
    Hostile("joblib_inside_estimator", ".joblib", "joblib", joblib_dumped(_in_estimator)),
    Hostile("torch_zip_payload", ".pt", "torch", torch_saved(_system)),
    Hostile("torch_zip_extra_record", ".pt", None, _extra_zip_record),
    Hostile("torch_zip_appended_pickle", ".pt", None, _appended_after_zip),
    Hostile("torch_zip_prepended_pickle", ".pt", "torch", _prepended_to_zip),
    Hostile("torch_legacy_payload", ".pt", "torch", torch_saved(_system, legacy=True)),
]


#: Loads each (kind, path) pair given on the command line the naive way.
NAIVE_LOADER = """
import sys, pickle, copyreg
copyreg.add_extension("os", "system", 0xF0)
args = sys.argv[1:]
for kind, path in zip(args[::2], args[1::2]):
    try:
        if kind == "pickle":
            with open(path, "rb") as f:
                pickle.load(f)
        elif kind == "joblib":
            import joblib
            joblib.load(path)
        else:
            import torch
            torch.load(path, weights_only=False)
    except Exception as e:
        print(path, type(e).__name__, e)
"""
