"""The torch format family."""
