"""The CUDA backend: the kernels of ``kernels/involution_cuda.cu``, launched through CuPy.

Modules, each with one job:

* :mod:`~mmrednet.ops.cuda.planning`: which entry point, grid and geometry
  arguments a call gets (pure: no GPU needed);
* :mod:`~mmrednet.ops.cuda.launcher`: compiling, loading and launching the
  entry points (CuPy, NVRTC) and why they cannot run in a process;
* :mod:`~mmrednet.ops.cuda.bound`: the error bound a correct kernel cannot
  exceed, shared by the self-check and the sweep of ``mmrednet.testing``;
* :mod:`~mmrednet.ops.cuda.selfcheck`: each entry point checked on its first
  use against the portable path;
* :mod:`~mmrednet.ops.cuda.backend`: the ops' CUDA kernels (``forward``,
  ``grad_input``, ``grad_weight``), falling back to the portable path.

``mmrednet.ops.library`` registers :func:`forward`, :func:`grad_input` and
:func:`grad_weight` for CUDA tensors when ``AVAILABLE``. Compiling,
loading and launching are :mod:`~mmrednet.ops.cuda.launcher`'s ``load``,
``launch`` and ``sm_count``, called through that module (the CPU tests put
the host emulation in their place there).
"""
from .backend import forward, grad_input, grad_weight
from .launcher import (
    AVAILABLE,
    CUPY_PACKAGES,
    EXTRA_CUDA,
    KERNEL_DIR,
    SOURCE,
    install_hint,
    unavailable_reason,
)
from .planning import (
    OPS,
    PARAMS,
    THREADS,
    Launch,
    LaunchParams,
    compile_options,
    entry_points,
    macros,
    plan,
    variant,
)

__all__ = [
    'AVAILABLE', 'CUPY_PACKAGES', 'EXTRA_CUDA', 'KERNEL_DIR', 'OPS', 'PARAMS', 'SOURCE',
    'THREADS', 'Launch', 'LaunchParams', 'compile_options', 'entry_points', 'forward',
    'grad_input', 'grad_weight', 'install_hint', 'macros', 'plan', 'unavailable_reason',
    'variant'
]
