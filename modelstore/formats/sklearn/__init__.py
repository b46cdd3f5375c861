"""The sklearn format family."""
