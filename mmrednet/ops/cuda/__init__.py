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
  ``grad_input``, ``grad_weight``), falling back to the portable path;
* :mod:`~mmrednet.ops.cuda.fused_planning`, :mod:`~mmrednet.ops.cuda.fused_selfcheck`
  and :mod:`~mmrednet.ops.cuda.fused_backend`: the same for the fused op's kernels
  (``kernels/involution_fused_cuda.cu``), which fall back to its composition.

``mmrednet.ops.library`` registers :func:`forward`, :func:`grad_input` and
:func:`grad_weight` (and :func:`fused_forward`, :func:`fused_grad_input`,
:func:`fused_grad_span`) for CUDA tensors when ``AVAILABLE``. Compiling,
loading and launching are :mod:`~mmrednet.ops.cuda.launcher`'s ``load``,
``launch`` and ``sm_count``, called through that module (the CPU tests put
the host emulation in their place there).
"""
from .backend import forward, grad_input, grad_weight
from .fused_backend import forward as fused_forward
from .fused_backend import grad_input as fused_grad_input
from .fused_backend import grad_span as fused_grad_span
from .launcher import (
    AVAILABLE,
    CUPY_PACKAGES,
    EXTRA_CUDA,
    FUSED_SOURCE,
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
    'AVAILABLE', 'CUPY_PACKAGES', 'EXTRA_CUDA', 'FUSED_SOURCE', 'KERNEL_DIR', 'OPS', 'PARAMS',
    'SOURCE', 'THREADS', 'Launch', 'LaunchParams', 'compile_options', 'entry_points', 'forward',
    'fused_forward', 'fused_grad_input', 'fused_grad_span', 'grad_input', 'grad_weight',
    'install_hint', 'macros', 'plan', 'unavailable_reason', 'variant'
]
