"""The emotion model: class names (labels), the network registry (archspec, architectures), the declared
preprocessing (preprocess), the PyTorch model file and its loader (modelfile), its ONNX export
(onnxexport) and the torch-free serving runtime (runtime)."""
