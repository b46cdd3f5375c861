"""Loading an ONNX graph: its external data copied through the confinement check's own
descriptors (:func:`copy_external`), then the checker and onnxruntime's session
(:func:`new_session`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import FormatError
from ...security.confine import open_confined
from ...storage.hashing import check_checksum
from .files import proto_checksum


def copy_external(
    path: Path, data: bytes, locations: list[str], folder: Path, proto: Any, request: Any
) -> None:
    """Copy the graph and its external data files into ``folder``, each file read through
    the confinement check's own descriptor, and check the recorded checksum on the
    copies. Red team: checked by name and then opened by name by onnxruntime, a data file
    swapped for a hard link in between (8 loads in 10) read a file outside the folder,
    past the checksum too."""
    import shutil

    for name in locations:
        with (
            open_confined(path.parent, name, what="the external data file", main=path) as src,
            open(folder / name, "xb") as dst,
        ):
            shutil.copyfileobj(src, dst, 1 << 20)
    (folder / path.name).write_bytes(data)
    expected = (request.meta or {}).get("checksum")
    if request.verify and isinstance(expected, str):
        check_checksum(path, expected, proto_checksum(proto, folder), "its metadata_props")


def new_session(
    path: Path, data: bytes, folder: Path | None, ort: Any, providers: Any, domains: Any
) -> Any:
    """onnxruntime's session for the graph ``data``, checked by ``onnx.checker`` first; its
    external data read from ``folder`` (the private copies)."""
    import onnx

    try:
        onnx.checker.check_model(str(folder / path.name) if folder else data)
    except Exception as e:  # ValidationError, and C++ errors surfaced as others
        raise FormatError(
            f"{path}: onnx.checker rejects the model: {str(e).splitlines()[0]}"
        ) from None
    options = ort.SessionOptions()
    if folder is not None:
        options.add_session_config_entry(
            "session.model_external_initializers_file_folder_path", str(folder)
        )
    try:  # no constant folding: onnxruntime caps one folded node at 1 GiB, not their sum
        # (red team: a 393-byte graph of three Expand nodes took 3 GiB to load); predict
        # computes what folding would have, once per call
        return ort.InferenceSession(
            data, options, providers=providers, disabled_optimizers=["ConstantFolding"]
        )
    except Exception as e:  # onnxruntime's Fail / InvalidGraph / NotImplemented
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        hint = (
            f"; it uses operator domains {domains}, which need custom-op libraries that modelstore "
            f"never loads"
            if domains
            else ""
        )
        raise FormatError(f"{path}: onnxruntime cannot load the model ({first}){hint}") from None
