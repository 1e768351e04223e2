"""The benchmark baseline of the CUDA kernels: one thread per output element.

``kernels/involution_cuda_baseline.cu`` holds the simplest correct kernels;
``tools/benchmark_involution.py`` and ``tools/check_cuda.py`` time the
launcher's kernels against them. They are never used to compute a result.
"""
from typing import List, Sequence

import torch
from torch import Tensor

from mmrednet.ops.cuda import launcher
from mmrednet.ops.cuda.planning import MAX_GRID, OPS, TAGS, THREADS, Launch, ceil_div, plan

SOURCE = launcher.KERNEL_DIR / 'involution_cuda_baseline.cu'


def entry_points(dtype: torch.dtype) -> List[str]:
    """The baseline's entry points for ``dtype``."""
    return [f'involution_baseline_{op}_{TAGS[dtype]}' for op in OPS]


def baseline(op: str, a: Tensor, b: Tensor, input_shape: Sequence[int],
             weight_shape: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             dilation: Sequence[int]) -> Tensor:
    """``op`` by the baseline kernels, with the argument order of the launcher's ops
    (forward: input, weight; grad_input: grad_output, weight; grad_weight:
    grad_output, input).

    Raises:
        RuntimeError: the CUDA kernels cannot run here (no GPU, no CuPy).
    """
    a, b = a.contiguous(), b.contiguous()
    n, c, _, _ = input_shape
    shape = {'forward': (n, c, weight_shape[4], weight_shape[5]), 'grad_input': input_shape,
             'grad_weight': weight_shape}[op]
    result = a.new_empty(shape)
    if result.numel():
        geometry = plan(op, input_shape, weight_shape, stride, padding, dilation, a.dtype,
                        1).geometry
        blocks = max(1, min(ceil_div(result.numel(), THREADS), MAX_GRID))
        name = f'involution_baseline_{op}_{TAGS[a.dtype]}'
        launcher.launch(Launch(name, blocks, geometry), (a, b, result), SOURCE)
    return result
