"""The ``mmrednet::involution*`` custom ops: the single dispatch point.

Three ops (forward, grad_input, grad_weight) are registered through
``torch.library`` with fake implementations, so autograd, ``torch.compile``
(no graph break) and ``torch.library.opcheck`` see them as ordinary operators.
The default implementation is the portable PyTorch path (any device); device
kernels override it: the compiled CPU kernels and the CuPy CUDA kernels.
All ops take the canonical 2-D layout (see ``_args.canonicalize``).
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


@involution_op.register_fake
def _(input, weight, stride, padding, dilation):
    n, c = input.shape[:2]
    return input.new_empty(n, c, weight.shape[4], weight.shape[5])


@grad_input_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation):
    return grad_output.new_empty(input.shape)


@grad_weight_op.register_fake
def _(grad_output, input, weight, stride, padding, dilation):
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
