"""TensorRT engines from the exported ONNX graphs, built for the GPU at hand and cached per
hardware (`ov2 build-engines`, `ov2 inspect-engine`). Sits on top of ov2_ros: it writes what
ov2_ros.runtime.engines describes and ov2_ros.runtime.tensorrt_backend loads."""
