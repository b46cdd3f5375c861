"""The safetensors format family."""
