"""Test utilities shipped with the package (as ``torch.testing`` is with torch).

They check the CUDA kernels: ``sweep`` (the random geometries and the
comparison against the reference, within the error bound of
``mmrednet.ops.cuda.bound``), ``emulation`` (the kernels run on the host, under
the sanitizers; it builds ``kernels/emulation/`` of a source checkout),
``host_checks`` (the emulation's checks as report lines), ``nvrtc`` (the device
code as the launcher compiles it), ``report`` (tables, JSON and PNG) and
``check_cuda`` (the steps of the check on the user's GPU). The tests,
``tools/cuda_emulation.py`` and ``tools/check_cuda.py`` share them, so every
one of them checks the same things. They import the ops; the ops never import
them.
"""
