"""The keras format family."""
