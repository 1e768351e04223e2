"""The ``mmrednet::involution*`` custom ops: the single dispatch point.

Three ops (forward, grad_input, grad_weight) are registered through
``torch.library`` with fake implementations, so autograd, ``torch.compile``
(no graph break) and ``torch.library.opcheck`` see them as ordinary operators.
The default implementation is the portable PyTorch path (any device); device
kernels override it: the compiled CPU kernels and the CuPy CUDA kernels.
All ops take the canonical 2-D layout (see ``_args.canonicalize``), dense in
memory (``_args.dense``): contiguous, or channels-last with a pixel-major kernel.
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import cpu, cuda, portable


@torch.library.custom_op('mmrednet::involution', mutates_args=())
def involution_op(input: Tensor, weight: Tensor, stride: List[int], padding: List[int],
                  dilation: List[int]) -> Tensor:
    """``(N, C, H, W), (N, G, Kh, Kw, Ho, Wo) -> (N, C, Ho, Wo)``."""
    return portable.forward(input, weight, stride, padding, dilation)


@torch.library.custom_op('mmrednet::involution_grad_input', mutates_args=())
def grad_input_op(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
                  padding: List[int], dilation: List[int]) -> Tensor:
    """Gradient w.r.t. ``input``; ``input`` is read for its shape only."""
    return portable.grad_input(grad_output, input, weight, stride, padding, dilation)


@torch.library.custom_op('mmrednet::involution_grad_weight', mutates_args=())
def grad_weight_op(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
                   padding: List[int], dilation: List[int]) -> Tensor:
    """Gradient w.r.t. ``weight``; ``weight`` is read for its shape only."""
    return portable.grad_weight(grad_output, input, weight, stride, padding, dilation)


for _backend, _device in ((cpu, 'cpu'), (cuda, 'cuda')):
    if _backend.AVAILABLE:
        involution_op.register_kernel(_device)(_backend.forward)
        grad_input_op.register_kernel(_device)(_backend.grad_input)
        grad_weight_op.register_kernel(_device)(_backend.grad_weight)


def _channels_last(input: Tensor, weight: Tensor) -> bool:
    """Whether the backend computes channels-last: only the CPU kernels do (see ``cpu.py``)."""
    return input.device.type == 'cpu' and cpu.AVAILABLE and cpu.channels_last(weight)


def _like(t: Tensor, shape, channels_last: bool) -> Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=fmt)


# Fake implementations: shapes, and the strides the backend's outputs have.
@involution_op.register_fake
def _(input, weight, stride, padding, dilation):
    n, c = input.shape[:2]
    return _like(input, (n, c, weight.shape[4], weight.shape[5]),
                 _channels_last(input, weight))


@grad_input_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation):
    return _like(grad_output, input.shape, _channels_last(input, weight))


@grad_weight_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation):
    if _channels_last(input, weight):
        n, g, kh, kw, ho, wo = weight.shape
        return grad_output.new_empty(n, ho, wo, g, kh, kw).permute(0, 3, 4, 5, 1, 2)
    return grad_output.new_empty(weight.shape)


def _setup_context(ctx, inputs, output):
    input, weight, stride, padding, dilation = inputs
    ctx.save_for_backward(input, weight)
    ctx.geometry = (stride, padding, dilation)


def involution_grads(grad_output: Tensor, input: Tensor, weight: Tensor, stride: List[int],
                     padding: List[int], dilation: List[int],
                     output_mask: Sequence[bool] = (True, True)) -> Tuple[Optional[Tensor], ...]:
    """``(grad_input, grad_weight)`` of the canonical op; None where ``output_mask`` is False."""
    geometry = (stride, padding, dilation)
    grad_in = grad_input_op(grad_output, input, weight, *geometry) if output_mask[0] else None
    grad_w = grad_weight_op(grad_output, input, weight, *geometry) if output_mask[1] else None
    return grad_in, grad_w


def _backward(ctx, grad_output):
    input, weight = ctx.saved_tensors
    return (*involution_grads(grad_output, input, weight, *ctx.geometry,
                              ctx.needs_input_grad[:2]), None, None, None)


involution_op.register_autograd(_backward, setup_context=_setup_context)
