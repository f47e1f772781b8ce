"""Stage 7: ONNX export in the sherpa-onnx offline-transducer layout, and its sherpa-onnx check."""
