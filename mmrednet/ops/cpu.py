"""The CPU backend: the compiled ``mmrednet._ext`` kernels when they were built.

The kernels compute in float32/float64; half and bfloat16 inputs are computed
in float32 and rounded once at the end, which is both faster and more accurate
on CPUs than accumulating 49 products in 16 bits.

Two memory layouts are computed in place: all tensors contiguous (NCHW), or,
when the kernel is pixel-major (what a channels-last 1x1 convolution writes,
see ``_args.is_pixel_major``), channels-last input, grad_output and outputs.
A channels-last model thus runs the op without any layout copy.
"""
import torch
from torch import Tensor

from ._args import is_pixel_major

try:
    from mmrednet import _ext
except ImportError:  # no compiler at install time: the portable path serves the CPU
    _ext = None

AVAILABLE = _ext is not None
_NATIVE = (torch.float32, torch.float64)


def channels_last(weight: Tensor) -> bool:
    """Whether the kernels run channels-last for this kernel tensor."""
    return is_pixel_major(weight)


def _compute_dtype(t: Tensor) -> torch.dtype:
    return t.dtype if t.dtype in _NATIVE else torch.float32


def _dense(t: Tensor, layout_cl: bool) -> Tensor:
    """An (N, C, H, W) tensor in the computing dtype and the problem's layout."""
    t = t.to(_compute_dtype(t))
    return t.contiguous(memory_format=torch.channels_last if layout_cl else torch.contiguous_format)


def _kernel(weight: Tensor, layout_cl: bool) -> Tensor:
    weight = weight.to(_compute_dtype(weight))  # keeps a pixel-major layout
    return weight if layout_cl else weight.contiguous()


def forward(input, weight, stride, padding, dilation):
    cl = channels_last(weight)
    out = _ext.forward(_dense(input, cl), _kernel(weight, cl), stride, padding, dilation, cl)
    return out.to(input.dtype)


def grad_input(grad_output, input, weight, stride, padding, dilation):
    cl = channels_last(weight)
    # input: for its shape only.
    out = _ext.grad_input(_dense(grad_output, cl), input, _kernel(weight, cl), stride, padding,
                          dilation, cl)
    return out.to(grad_output.dtype)


def grad_weight(grad_output, input, weight, stride, padding, dilation):
    cl = channels_last(weight)
    # weight: for its shape and layout only.
    out = _ext.grad_weight(_dense(grad_output, cl), _dense(input, cl), weight, stride, padding,
                           dilation, cl)
    return out.to(grad_output.dtype)
