"""GGUF files (llama.cpp's format): ``inspect``, ``scan`` and ``load`` of their tensors.

The header is read by modelstore's own checked reader (:mod:`.header`), never by a native
library. ``ms.load("m.gguf")`` returns a dict name -> numpy array:

- plain types load as their numpy dtype: F32, F16, F64, I8, I16, I32, I64; BF16 (which
  numpy lacks) is widened to float32, exactly;
- shapes are numpy's row-major order, GGUF's dimensions reversed: a tensor GGUF lists as
  ``[4096, 32000]`` (ggml's ``ne0`` first, the fastest-varying) loads with shape
  ``(32000, 4096)``, the layout the ``gguf`` package's ``GGUFReader`` gives too;
- block-quantized tensors (Q4_0, Q8_0, Q4_K, IQ2_XXS, ...) load as their raw blocks, uint8
  arrays of shape ``(..., bytes per row)`` as ``GGUFReader`` gives them (``quantized="raw"``,
  the default); ``quantized="skip"`` leaves them out, ``quantized="refuse"`` raises;
- ``device="cpu"`` (or ``"cuda"``) returns torch tensors instead (BF16 as torch.bfloat16).

Nothing in a GGUF file runs when it is loaded, so ``scan`` says "safe"; a chat template in
the metadata (``tokenizer.chat_template``) is Jinja code that inference engines render on
every prompt: ``scan`` reports it as a finding and ``inspect`` under ``metadata["code"]``,
and modelstore never renders it.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..._info import Finding, ScanReport
from ...errors import (
    ArgumentError,
    FormatError,
    IntegrityError,
    MissingDependencyError,
    UnsupportedModelError,
)
from ...security import STRUCTURE, unreadable
from ..base import Backend, Inspection, LoadRequest, pass_cached
from . import display
from .entries import GGUFFileError, Header, TensorEntry
from .header import is_gguf, named, parse

QUANTIZED_CHOICES = ("raw", "skip", "refuse")
_ADVICE = {
    "damaged": "download or copy the file again",
    "format": "check that it is a GGUF file written by llama.cpp or the gguf package",
    "suspicious": "do not use this file: it is damaged or crafted",
}


@dataclass(frozen=True)
class LoadOptions:
    """``quantized``: what ``load`` does with block-quantized tensors (Q4_0, Q8_0, ...):
    ``"raw"`` returns their bytes (uint8, one row of blocks per last axis), ``"skip"``
    leaves them out, ``"refuse"`` raises UnsupportedModelError naming them."""

    quantized: str = "raw"


class GGUFBackend(Backend):
    """llama.cpp's GGUF files, read by modelstore's own checked header reader."""

    name = "gguf"
    framework = "gguf"
    suffixes = (".gguf",)
    risk = "safe"  # tensors and typed metadata only; the chat template is reported, not run
    extra = "numpy"
    requires = ("numpy",)
    reads_one_file = True
    LoadOptions = LoadOptions

    def sniff(self, path: Path, head: bytes) -> bool:
        return is_gguf(head)

    def accepts(self, path: Path, head: bytes) -> bool:
        return is_gguf(head)

    def save_hint(self, obj: Any) -> str:
        return "modelstore reads GGUF files but does not write them: use llama.cpp's converters"

    # -- reading --------------------------------------------------------------------------
    def header(self, path: Path, file: BinaryIO | None = None) -> Header:
        """The checked header (parsed once per pipeline pass); ModelstoreErrors only.
        ``file``: the descriptor the load reads the tensors from, so both see one file."""
        try:
            return _parsed(path, file)
        except GGUFFileError as e:
            raise _error(path, e) from None

    def scan(self, path: Path) -> ScanReport:
        try:
            header = _parsed(path, None)
        except GGUFFileError as e:
            msg = f"{e}; {_ADVICE[e.kind]}"
            if e.kind == "suspicious":
                return ScanReport(
                    str(path), self.name, "unsafe", [Finding(STRUCTURE, "critical", msg)]
                )
            return unreadable(path, self.name, e.kind, msg, subject="header")
        return ScanReport(str(path), self.name, "safe", display.findings(header))

    def inspect(self, path: Path) -> Inspection:
        header = self.header(path)
        return Inspection(
            framework=self.framework,
            tensors=display.tensors(header),
            num_params=sum(t.numel for t in header.tensors),
            extra_metadata=display.extra_metadata(header),
        )

    def load(self, path: Path, request: LoadRequest) -> Any:
        if request.model is not None:
            raise ArgumentError(
                f"{path}: model= builds a torch module from weights; a GGUF file loads as a "
                f"dict of arrays (drop model=)"
            )
        quantized = request.options.quantized
        if quantized not in QUANTIZED_CHOICES:
            msg = f"quantized= must be one of {', '.join(map(repr, QUANTIZED_CHOICES))}, not {quantized!r}"
            raise ArgumentError(msg)
        to_torch = _torch_device(path, request.device)
        with open(path, "rb") as f:
            header = self.header(path, f)
            chosen = _chosen(path, header, quantized)
            out: dict[str, Any] = {}
            for t in chosen:
                array = _read(path, f, header, t)
                out[t.name] = (
                    _widened(array, t) if to_torch is None else _tensor(array, t, to_torch)
                )
        return out


def _parsed(path: Path, file: BinaryIO | None) -> Header:
    """The header of ``file`` (or of ``path`` opened here), parsed once per pipeline pass:
    the key is the path and the file's identity (device, inode, size, modification time)."""
    with contextlib.ExitStack() as stack:
        f = file if file is not None else stack.enter_context(open(path, "rb"))
        st = os.fstat(f.fileno())
        key = ("gguf-header", os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        header: Header = pass_cached(key, lambda: parse(f, st.st_size))
        return header


def _error(path: Path, e: GGUFFileError) -> Exception:
    msg = f"{path}: {e}; {_ADVICE[e.kind]}"
    return IntegrityError(msg) if e.kind == "damaged" else FormatError(msg)


def _chosen(path: Path, header: Header, quantized: str) -> list[TensorEntry]:
    blocks = [t for t in header.tensors if t.type.quantized]
    if blocks and quantized == "refuse":
        names = ", ".join(f"{named(t.name)} ({t.type.name})" for t in blocks[:5])
        more = f" and {len(blocks) - 5} more" if len(blocks) > 5 else ""
        msg = (
            f"{path}: {len(blocks)} tensors are block-quantized ({names}{more}); pass "
            f'quantized="raw" for their bytes or quantized="skip" to load the others'
        )
        raise UnsupportedModelError(msg)
    if quantized == "skip":
        return [t for t in header.tensors if not t.type.quantized]
    return list(header.tensors)


def _read(path: Path, f: io.BufferedReader, header: Header, t: TensorEntry) -> Any:
    """One tensor's data as a numpy array: the offsets and sizes were checked against the
    file's size when the header was read; a file that shrank since is reported."""
    import numpy as np

    buf = np.empty(t.nbytes, dtype=np.uint8)  # filled below: no zeroing pass first
    f.seek(header.data_start + t.offset)
    if f.readinto(buf.data) != t.nbytes:
        raise IntegrityError(
            f"{path}: the file ended inside tensor {named(t.name)}; it was truncated"
        )
    if t.type.numpy is None:
        return buf.reshape(t.stored_shape)
    array = buf.view(np.dtype(t.type.numpy)).reshape(t.shape)
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _widened(array: Any, t: TensorEntry) -> Any:
    """BF16 (read as its raw 16 bits) as float32: the top half of a float32, so exact."""
    import numpy as np

    if t.type.name == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _torch_device(path: Path, device: str | None) -> Any:
    """The torch device to put tensors on (None: numpy arrays); refused before any read when
    torch is missing or cannot use it."""
    if device is None:
        return None
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        msg = f'{path}: device= returns torch tensors and needs torch; pip install "modelstore-safe[torch]"'
        raise MissingDependencyError(msg, name="torch")
    import torch

    from ..torch.common import check_device

    check_device(device, path)
    return torch.device(device)


def _tensor(array: Any, t: TensorEntry, device: Any) -> Any:
    import numpy as np
    import torch

    if t.type.name == "BF16":  # the stored bits, as torch's own bfloat16
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).to(device)
    return torch.from_numpy(array).to(device)


__all__ = ["GGUFBackend", "LoadOptions"]
