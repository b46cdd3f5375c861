"""LightGBM native model files (text)."""
