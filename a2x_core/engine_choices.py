"""The engine and precision names that the options and every command accept.

A module without imports: the CLI's parser lists them without loading NumPy.
"""

#: Inference engines (``auto``: TensorRT, then PyTorch on a GPU, else ONNX Runtime).
BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
#: Network precisions of the GPU engines (fp32 matches the CPU exactly).
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
