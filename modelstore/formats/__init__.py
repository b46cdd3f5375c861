"""Format families: one folder each (torch, safetensors incl. shards, sklearn, keras, onnx
incl. export). A backend reads and writes its own bytes; the pipeline drives it."""
