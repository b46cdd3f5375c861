"""Exceptions and warnings raised by modelstore.

Every error a public call raises on bad input is a :class:`ModelstoreError`; each one also
subclasses the builtin it resembles, so ``except ValueError`` or ``except ImportError`` in
existing code keeps working::

    ModelstoreError(Exception)
    ├── UnsafeModelError(ValueError)          the file would run code; nothing was executed
    ├── IntegrityError(ValueError)            checksum or pin mismatch, truncated file
    ├── SignatureError(ValueError)            a signature is missing, invalid, out of date or not the signer's
    ├── FormatError(ValueError)               unknown, corrupt or mislabelled file
    ├── ArchitectureMismatchError(ValueError) weights do not fit the model
    ├── ExportMismatchError(ValueError)       ONNX output differs beyond tolerance
    ├── UnsupportedModelError(TypeError)      no backend can handle this object / operation
    ├── MissingDependencyError(ImportError)   a framework is not installed; names the extra
    ├── ModelNotFoundError(FileNotFoundError) the path does not exist
    ├── ModelExistsError(FileExistsError)     save(..., overwrite=False) onto an existing file
    ├── StorageError(OSError)                 the file system refused a read or write
    ├── RegistryError(ValueError)             a backend name is taken or malformed
    └── ArgumentError(ValueError)             an argument has a value the call cannot use

    PickleWarning(UserWarning)                a load unpickled data (after scanning it)
    ArchitectureMismatchWarning(UserWarning)  strict=False left keys unloaded
    BackendWarning(UserWarning)               a plugin backend is broken or clashes
    MetadataWarning(UserWarning)              a stale sidecar was set aside (another tool rewrote the file)
"""

from __future__ import annotations

__all__ = [
    "ModelstoreError",
    "UnsafeModelError",
    "IntegrityError",
    "SignatureError",
    "FormatError",
    "ArchitectureMismatchError",
    "ExportMismatchError",
    "UnsupportedModelError",
    "MissingDependencyError",
    "ModelNotFoundError",
    "ModelExistsError",
    "StorageError",
    "RegistryError",
    "ArgumentError",
    "PickleWarning",
    "ArchitectureMismatchWarning",
    "BackendWarning",
    "MetadataWarning",
]


class ModelstoreError(Exception):
    """Base class of every error modelstore raises on bad input."""


class UnsafeModelError(ModelstoreError, ValueError):
    """The file references code outside the allow-list; nothing from it was executed.

    ``untrusted`` lists the ``module.Name`` globals that caused the refusal.
    """

    def __init__(self, message: str, untrusted: list[str] | None = None) -> None:
        super().__init__(message)
        self.untrusted = list(untrusted or [])


class IntegrityError(ModelstoreError, ValueError):
    """The file does not match its recorded checksum or the caller's pin, or is truncated."""


class SignatureError(ModelstoreError, ValueError):
    """A requested signature check failed: no signature, an invalid one, one made by another
    key, or one that does not cover exactly the files that would be loaded. Nothing was
    deserialised."""


class FormatError(ModelstoreError, ValueError):
    """The file is not in a format modelstore knows, is corrupt, or its suffix lies."""


class ArchitectureMismatchError(ModelstoreError, ValueError):
    """The weights do not fit the model: missing, unexpected or mis-shaped keys."""

    def __init__(
        self,
        message: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.unexpected = list(unexpected or [])
        self.mismatched = list(mismatched or [])


class ExportMismatchError(ModelstoreError, ValueError):
    """An exported model's outputs differ from the original beyond the tolerances."""


class UnsupportedModelError(ModelstoreError, TypeError):
    """No backend can save, predict with or export this kind of object."""


class MissingDependencyError(ModelstoreError, ImportError):
    """A framework needed for this file or object is not installed."""


class ModelNotFoundError(ModelstoreError, FileNotFoundError):
    """The model path does not exist."""


class ModelExistsError(ModelstoreError, FileExistsError):
    """``save(..., overwrite=False)`` found a file already at the target path."""


class StorageError(ModelstoreError, OSError):
    """The file system refused a read or a write (permissions, disk full, not a file)."""


class RegistryError(ModelstoreError, ValueError):
    """A backend could not be registered (name taken, malformed backend)."""


class ArgumentError(ModelstoreError, ValueError):
    """An argument has a value the call cannot use (e.g. ``output="probs"``)."""


class PickleWarning(UserWarning):
    """A load unpickled data; it was scanned against the allow-list first."""


class ArchitectureMismatchWarning(UserWarning):
    """``strict=False`` loaded what matched and left the listed keys alone."""


class MetadataWarning(UserWarning):
    """modelstore's metadata for a file was not used as recorded (e.g. a stale sidecar)."""


class BackendWarning(UserWarning):
    """A third-party backend failed to load or clashes with another name."""
