"""Running a model: backends (PyTorch here; ONNX Runtime and TensorRT behind the same interface)
and the question-answering pipeline the CLI and the ROS node call."""
