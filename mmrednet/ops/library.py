"""The ``mmrednet::involution*`` ops: the single dispatch point.

Three ops (forward, grad_input, grad_weight), as torchvision defines its ops,
and three of the fused op ``involution(input, span(hidden))`` (forward,
grad_input, grad_span), whose portable kernels are its composition:
the schemas (``schemas.py``) and the CPU kernels come from the compiled op
library (``native.py``, ``STABLE_TORCH_LIBRARY`` in ``kernels/involution_cpu.cpp``);
without it the schemas are defined here. Registered from Python on the same
ops: fake kernels and autograd, so that ``torch.compile`` (no graph break),
``torch.export`` and ``torch.library.opcheck`` see ordinary operators; the
CuPy CUDA kernels; and the portable PyTorch path as the default for every
other device (and the CPU without the library). Every kernel registered here
first checks its arguments (``_args.check_op_args``); the C++ kernels check
the same themselves. All ops take the canonical 2-D layout (see
``_args.canonicalize``); the functional entry hands them dense tensors
(``_args.dense``): contiguous, or channels-last with a pixel-major kernel.
"""
import functools
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from . import cpu, cuda, native, portable
from ._args import check_op_args
from ._fused_args import check_fused_op_args
from .schemas import SCHEMAS

_LIB = torch.library.Library('mmrednet', 'FRAGMENT')  # lives as long as the process
if not native.LOADED:
    for _schema in SCHEMAS.values():
        _LIB.define(_schema)

involution_op = torch.ops.mmrednet.involution
grad_input_op = torch.ops.mmrednet.involution_grad_input
grad_weight_op = torch.ops.mmrednet.involution_grad_weight
fused_op = torch.ops.mmrednet.involution_fused
fused_grad_input_op = torch.ops.mmrednet.involution_fused_grad_input
fused_grad_span_op = torch.ops.mmrednet.involution_fused_grad_span


def _checked(kernel: Callable, fallback: Callable, with_grad_output: bool) -> Callable:
    """``kernel`` behind the argument checks; problems with nothing to compute
    (an empty batch or no channel) go to ``fallback``, the portable kernel every device runs."""

    @functools.wraps(kernel)
    def run(*args):
        grad_output, (input, weight, *geometry) = ((args[0], args[1:]) if with_grad_output else
                                                   (None, args))
        check_op_args(input, weight, *geometry, grad_output=grad_output)
        return (kernel if input.numel() else fallback)(*args)

    return run


_KERNELS = {'involution': 'forward', 'involution_grad_input': 'grad_input',
            'involution_grad_weight': 'grad_weight'}
for _name, _kernel in _KERNELS.items():
    _grad, _portable = _name != 'involution', getattr(portable, _kernel)
    # The default for every device without its own kernel (and the CPU without the library).
    torch.library.register_kernel(f'mmrednet::{_name}', None,
                                  _checked(_portable, _portable, _grad), lib=_LIB)
    if cuda.AVAILABLE:
        torch.library.register_kernel(f'mmrednet::{_name}', 'cuda',
                                      _checked(getattr(cuda, _kernel), _portable, _grad),
                                      lib=_LIB)


def _channels_last(input: Tensor, weight: Tensor) -> bool:
    """Whether the backend computes channels-last: only the CPU kernels do (see ``cpu.py``)."""
    return input.device.type == 'cpu' and cpu.AVAILABLE and cpu.channels_last(weight)


def _like(t: Tensor, shape, channels_last: bool) -> Tensor:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=t.dtype, device=t.device, memory_format=fmt)


# Fake kernels: the same checks, shapes, and the strides the backend's outputs have.
@torch.library.register_fake('mmrednet::involution', lib=_LIB)
def _(input, weight, stride, padding, dilation):
    check_op_args(input, weight, stride, padding, dilation)
    n, c = input.shape[:2]
    return _like(input, (n, c, weight.shape[4], weight.shape[5]),
                 _channels_last(input, weight))


@torch.library.register_fake('mmrednet::involution_grad_input', lib=_LIB)
def _(grad_output, input, weight, stride, padding, dilation):
    check_op_args(input, weight, stride, padding, dilation, grad_output)
    return _like(grad_output, input.shape, _channels_last(input, weight))


@torch.library.register_fake('mmrednet::involution_grad_weight', lib=_LIB)
def _(grad_output, input, weight, stride, padding, dilation):
    check_op_args(input, weight, stride, padding, dilation, grad_output)
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


torch.library.register_autograd('mmrednet::involution', _backward,
                                setup_context=_setup_context, lib=_LIB)


# The fused op. Its composition is the kernel of every device without a fused
# one, of the CPU without the library, and of CUDA where the fused CUDA kernels
# cannot serve a call (``cuda.fused_backend``).
def _check_fused(input, hidden, weight, bias, *geometry):
    check_fused_op_args(input, hidden, weight, bias, *geometry)


def _check_fused_grad_input(grad_output, input, hidden, weight, bias, *geometry):
    check_fused_op_args(input, hidden, weight, bias, *geometry, grad_output=grad_output)


def _check_fused_grad_span(grad_output, input, hidden, weight, *geometry):
    check_fused_op_args(input, hidden, weight, None, *geometry, grad_output=grad_output)


def _fused_checked(kernel: Callable, check: Callable) -> Callable:
    """``kernel`` behind the fused op's argument checks (``check``, taking the op's arguments)."""

    @functools.wraps(kernel)
    def run(*args):
        check(*args)
        return kernel(*args)

    return run


_FUSED_KERNELS = {  # op -> (portable kernel, CUDA kernel, argument check)
    'involution_fused': (portable.fused_forward, cuda.fused_forward, _check_fused),
    'involution_fused_grad_input': (portable.fused_grad_input, cuda.fused_grad_input,
                                    _check_fused_grad_input),
    'involution_fused_grad_span': (portable.fused_grad_span, cuda.fused_grad_span,
                                   _check_fused_grad_span),
}
for _name, (_kernel, _cuda_kernel, _check) in _FUSED_KERNELS.items():
    torch.library.register_kernel(f'mmrednet::{_name}', None, _fused_checked(_kernel, _check),
                                  lib=_LIB)
    if cuda.AVAILABLE:  # the fused CUDA kernels, or the composition where they cannot serve
        torch.library.register_kernel(f'mmrednet::{_name}', 'cuda',
                                      _fused_checked(_cuda_kernel, _check), lib=_LIB)


def _fused_channels_last(input: Tensor) -> bool:
    """Whether the backend computes channels-last: only the CPU kernels do (see ``cpu.py``)."""
    return input.device.type == 'cpu' and cpu.AVAILABLE and cpu.fused_channels_last(input)


@torch.library.register_fake('mmrednet::involution_fused', lib=_LIB)
def _(input, hidden, weight, bias, kernel_size, stride, padding, dilation):
    _check_fused(input, hidden, weight, bias, kernel_size, stride, padding, dilation)
    return _like(input, (*input.shape[:2], *hidden.shape[2:]), _fused_channels_last(input))


@torch.library.register_fake('mmrednet::involution_fused_grad_input', lib=_LIB)
def _(grad_output, input, hidden, weight, bias, kernel_size, stride, padding, dilation):
    _check_fused_grad_input(grad_output, input, hidden, weight, bias, kernel_size, stride,
                            padding, dilation)
    return _like(grad_output, input.shape, _fused_channels_last(input))


@torch.library.register_fake('mmrednet::involution_fused_grad_span', lib=_LIB)
def _(grad_output, input, hidden, weight, kernel_size, stride, padding, dilation):
    _check_fused_grad_span(grad_output, input, hidden, weight, kernel_size, stride, padding,
                           dilation)
    return (_like(grad_output, hidden.shape, _fused_channels_last(input)),
            grad_output.new_empty(weight.shape), grad_output.new_empty(weight.shape[0]))


def _fused_setup_context(ctx, inputs, output):
    input, hidden, weight, bias, *geometry = inputs
    # The span's operands, never the kernel they generate: backward generates it again.
    ctx.save_for_backward(input, hidden, weight, bias)
    ctx.geometry = geometry


def involution_fused_grads(grad_output: Tensor, input: Tensor, hidden: Tensor, weight: Tensor,
                           bias: Optional[Tensor], kernel_size: List[int], stride: List[int],
                           padding: List[int], dilation: List[int],
                           output_mask: Sequence[bool] = (True, True, True, True)
                           ) -> Tuple[Optional[Tensor], ...]:
    """``(grad_input, grad_hidden, grad_weight, grad_bias)`` of the canonical fused op;
    None where ``output_mask`` is False (grad_bias also where ``bias`` is None)."""
    geometry = (kernel_size, stride, padding, dilation)
    grad_in = (fused_grad_input_op(grad_output, input, hidden, weight, bias, *geometry)
               if output_mask[0] else None)
    wanted = (output_mask[1], output_mask[2], bias is not None and output_mask[3])
    span = (fused_grad_span_op(grad_output, input, hidden, weight, *geometry) if any(wanted)
            else (None, ) * 3)
    return grad_in, *(g if w else None for g, w in zip(span, wanted, strict=True))


def _fused_backward(ctx, grad_output):
    input, hidden, weight, bias = ctx.saved_tensors
    return (*involution_fused_grads(grad_output, input, hidden, weight, bias, *ctx.geometry,
                                    ctx.needs_input_grad[:4]), None, None, None, None)


torch.library.register_autograd('mmrednet::involution_fused', _fused_backward,
                                setup_context=_fused_setup_context, lib=_LIB)
