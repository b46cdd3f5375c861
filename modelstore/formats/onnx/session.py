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
    path: Path, data: bytes, refs: list[Any], folder: Path, proto: Any, request: Any
) -> None:
    """Copy the graph, and the byte ranges its tensors take from external data files, into
    ``folder`` (each file read through the confinement check's own descriptor; a range at
    its offset, the rest left a hole), and check the recorded checksum through the same
    checks. Red team: checked by name and then opened by name by onnxruntime, a data file
    swapped for a hard link in between (8 loads in 10) read a file outside the folder; and
    a copy of whole files took minutes for a 64 GiB sparse one the graph read 16 bytes of."""
    import contextlib
    import os

    with contextlib.ExitStack() as stack:
        held: dict[str, Any] = {}  # normalised location -> the descriptor the check opened

        def opened(location: str) -> Any:
            name = os.path.normpath(location)
            if name not in held:
                held[name] = stack.enter_context(
                    open_confined(
                        path.parent, name, what="the external data file", source=path, main=path
                    )
                )
            return contextlib.nullcontext(held[name])

        for name, spans in _spans(path, refs).items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with opened(name) as src, open(target, "xb") as dst:
                size = os.fstat(src.fileno()).st_size
                for start, end in spans:
                    end = min(end, size)
                    src.seek(start)
                    dst.seek(start)
                    while start < end:
                        chunk = src.read(min(1 << 20, end - start))
                        if not chunk:
                            break
                        dst.write(chunk)
                        start += len(chunk)
        (folder / path.name).write_bytes(data)
        expected = (request.meta or {}).get("checksum")
        if request.verify and isinstance(expected, str):  # the files copied, not reopened
            # (red team E: a second open let a file swapped in between pass the checksum)
            actual = proto_checksum(proto, path.parent, opened)
            check_checksum(path, expected, actual, "its metadata_props")


def _spans(path: Path, refs: list[Any]) -> dict[str, list[tuple[int, int]]]:
    """Per data file (its location, normalised: ``./w.bin`` is ``w.bin``), the byte ranges
    its tensors read, merged. A tensor of a type with no fixed size must give its length
    (red team E: "to the end of the file" copied a 1 GiB sparse file whole)."""
    import os

    ranges: dict[str, list[tuple[int, int]]] = {}
    for ref in refs:
        try:
            start = int(ref.get("offset") or 0)
            length = ref.get("length")
            n = int(length) if length else ref.nbytes
        except ValueError:
            raise FormatError(
                f"{path}: an external data entry of {ref.tensor!r} is not a number"
            ) from None
        if n is None:
            raise FormatError(
                f"{path}: the external tensor {ref.tensor!r} has a type of no fixed size and "
                f"no length: onnxruntime cannot read it"
            )
        ranges.setdefault(os.path.normpath(ref.get("location") or ""), []).append(
            (start, start + n)
        )
    merged: dict[str, list[tuple[int, int]]] = {}
    for name, spans in ranges.items():
        out: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(end, out[-1][1]))
            else:
                out.append((start, end))
        merged[name] = out
    return merged


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
