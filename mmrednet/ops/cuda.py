"""The CUDA backend (CuPy-launched kernels from ``kernels/``): filled in by the CUDA work."""
AVAILABLE = False
