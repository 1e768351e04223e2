"""The CPU backend: the compiled ``mmrednet._ext`` kernels when they were built.

The kernels compute in float32/float64; half and bfloat16 inputs are computed
in float32 and rounded once at the end, which is both faster and more accurate
on CPUs than accumulating 49 products in 16 bits.
"""
import torch
from torch import Tensor

try:
    from mmrednet import _ext
except ImportError:  # no compiler at install time: the portable path serves the CPU
    _ext = None

AVAILABLE = _ext is not None
_NATIVE = (torch.float32, torch.float64)


def _call(kernel, *tensors: Tensor, geometry) -> Tensor:
    dtype = tensors[0].dtype
    compute = dtype if dtype in _NATIVE else torch.float32
    out = kernel(*(t.to(compute).contiguous() for t in tensors), *geometry)
    return out.to(dtype)


def forward(input, weight, stride, padding, dilation):
    return _call(_ext.forward, input, weight, geometry=(stride, padding, dilation))


def grad_input(grad_output, input, weight, stride, padding, dilation):
    return _call(_ext.grad_input, grad_output, input, weight,
                 geometry=(stride, padding, dilation))


def grad_weight(grad_output, input, weight, stride, padding, dilation):
    return _call(_ext.grad_weight, grad_output, input, weight,
                 geometry=(stride, padding, dilation))
