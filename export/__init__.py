"""Export stage (installed as ``edge_xcnn.export``): ONNX and TensorRT engines."""
