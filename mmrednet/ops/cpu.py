"""The CPU backend: the C++ kernels of the op library (``native.py``), when it was built.

The kernels are registered from C++ (``STABLE_TORCH_LIBRARY_IMPL(mmrednet, CPU, ...)``
in ``kernels/involution_cpu.cpp``, on torch's stable ABI), which also checks the arguments and
computes half and bfloat16 in float32. Two memory layouts are computed in
place: all tensors contiguous (NCHW), or, when the kernel is pixel-major (what
a channels-last 1x1 convolution writes, see ``_args.is_pixel_major``),
channels-last input, grad_output and outputs. A channels-last model thus runs
the op without any layout copy. The fused ops (``kernels/involution_fused_cpu.cpp``)
run channels-last when their input is. This module says which, for the fake kernels,
and picks the instruction set the kernels run (for tests and benchmarks).
"""
from typing import List

import torch
from torch import Tensor

from . import native
from ._args import is_pixel_major
from ._fused_args import is_channels_last

AVAILABLE = native.LOADED


def channels_last(weight: Tensor) -> bool:
    """Whether the kernels run channels-last for this kernel tensor."""
    return is_pixel_major(weight)


def fused_channels_last(input: Tensor) -> bool:
    """Whether the fused kernels run channels-last for this input (then hidden,
    grad_output and every (N, C, H, W) result are channels-last too)."""
    return is_channels_last(input)


def supported_isas() -> List[str]:
    """Instruction sets the kernels were compiled for and this CPU runs, widest first."""
    return list(torch.ops.mmrednet._cpu_supported_isas())


def isa() -> str:
    """Instruction set of the kernels in use (the widest by default)."""
    return torch.ops.mmrednet._cpu_isa()


def set_isa(name: str) -> None:
    """Use the kernels compiled for ``name``, one of :func:`supported_isas` (process-wide)."""
    torch.ops.mmrednet._cpu_set_isa(name)
