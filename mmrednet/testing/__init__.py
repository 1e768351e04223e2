"""Test utilities shipped with the package (as ``torch.testing`` is with torch).

They check the CUDA kernels: ``sweep`` (the random geometries, tolerances and
comparison against the reference), ``emulation`` (the kernels run on the host,
under the sanitizers), ``nvrtc`` (the device code as the launcher compiles it).
The tests, ``tools/cuda_emulation.py`` and ``tools/check_cuda.py`` (on the
user's GPU) share them, so every one of them checks the same things.
"""
