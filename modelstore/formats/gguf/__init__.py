"""GGUF (llama.cpp's format): our own checked header reader and a loader of its tensors."""
