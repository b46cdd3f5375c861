"""The onnx format family."""
