"""NumPy ``.npy``/``.npz`` arrays, read without pickle."""
