"""Benchmarks and analysis of the op, the kernels and the models (what the tools run).

``tools/benchmark_involution.py``, ``tools/benchmark_memory.py``,
``tools/benchmark_deploy.py`` (``deploy.py``) and the measuring steps of
``tools/check_cuda.py`` parse their arguments and call these modules; nothing in
the library imports them.
"""
