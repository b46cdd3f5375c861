"""A versioned model store on a local folder or any fsspec URI (``s3://``, ``gs://``, ``memory://``)."""

from .records import ModelVersion, default_root
from .store import Store

__all__ = ["ModelVersion", "Store", "default_root"]
