"""Storage: atomic writes, hashing, sidecars, locks and remote transport. Bytes only: no
module here knows a model format."""
