"""A versioned model store on a local folder or any fsspec URI (``s3://``, ``gs://``, ``memory://``)."""

from .store import ModelVersion, Store, default_root

__all__ = ["ModelVersion", "Store", "default_root"]
