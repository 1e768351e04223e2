"""Argument checking of the fused involution op, shared by its entry points.

The fused op takes the kernel branch's hidden features and its span (a 1x1
convolution) instead of the generated kernel; the checks name those
arguments. As for :func:`mmrednet.ops.involution`, a 1-D problem is folded
into the 2-D layout here, once.
"""
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ._args import IntOrPair, _as_tuple, _check_like_input, output_grid

_PREFIX = 'involution_fused'


@dataclass(frozen=True)
class FusedGeometry:
    """Kernel size, stride, padding and dilation of the 2-D problem, as (h, w) pairs."""
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]

    def lists(self) -> List[List[int]]:
        """The four pairs as the ops take them."""
        return [list(self.kernel_size), list(self.stride), list(self.padding),
                list(self.dilation)]


def _span_weight(weight: Tensor, ndim: int) -> Tensor:
    """``weight`` as ``(G*Kh*Kw, C_hidden)``: given so, or as a 1x1 convolution stores it."""
    if weight.dim() == 2 or (weight.dim() == 2 + ndim and weight.shape[2:] == (1, ) * ndim):
        return weight.flatten(1)
    conv = '(G * K, C_hidden, 1)' if ndim == 1 else '(G * K_h * K_w, C_hidden, 1, 1)'
    rows = 'G * K' if ndim == 1 else 'G * K_h * K_w'
    raise ValueError(f'{_PREFIX}: weight must be ({rows}, C_hidden) or a 1x1 convolution\'s '
                     f'{conv}, got shape {tuple(weight.shape)}')


def canonicalize_fused(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                       kernel_size: IntOrPair, stride: IntOrPair, padding: IntOrPair,
                       dilation: IntOrPair
                       ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor], FusedGeometry, bool]:
    """Validate the fused op's arguments and bring a 1-D problem into the 2-D layout.

    Args:
        input (Tensor): ``(N, C, H, W)`` or ``(N, C, L)``.
        hidden (Tensor): ``(N, C_hidden, H_out, W_out)`` or ``(N, C_hidden, L_out)``.
        weight (Tensor): the span, ``(G*Kh*Kw, C_hidden)``, or as a 1x1
            convolution stores it (trailing dimensions of size 1).
        bias (Tensor, optional): ``(G*Kh*Kw,)``.
        kernel_size, stride, padding, dilation: an int or one int per spatial axis.

    Returns:
        tuple: ``input`` ``(N, C, H, W)``, ``hidden`` ``(N, C_hidden, Ho, Wo)``,
        ``weight`` ``(G*Kh*Kw, C_hidden)``, ``bias``, the 2-D geometry, and
        whether the problem was 1-D.

    Raises:
        ValueError, TypeError: naming the parameter and the expected value.
    """
    if not all(isinstance(t, Tensor) for t in (input, hidden, weight)):
        raise TypeError(f'{_PREFIX}: input, hidden and weight must be tensors')
    if bias is not None and not isinstance(bias, Tensor):
        raise TypeError(f'{_PREFIX}: bias must be a tensor or None, got {type(bias).__name__}')
    if input.dim() not in (3, 4):
        raise ValueError(f'{_PREFIX}: input must be (N, C, L) or (N, C, H, W), got shape '
                         f'{tuple(input.shape)}')
    ndim = input.dim() - 2
    if hidden.dim() != input.dim():
        expected = '(N, C_hidden, L_out)' if ndim == 1 else '(N, C_hidden, H_out, W_out)'
        raise ValueError(f'{_PREFIX}: for a {ndim}-D input, hidden must be {expected}, got '
                         f'shape {tuple(hidden.shape)}')
    weight = _span_weight(weight, ndim)
    for name, tensor in (('hidden', hidden), ('weight', weight), ('bias', bias)):
        if tensor is not None:
            _check_like_input(name, tensor, input)
    if not input.is_floating_point():
        raise TypeError(f'{_PREFIX}: input must be a floating point tensor, got {input.dtype}')
    kernel_t = _as_tuple(kernel_size, ndim, 'kernel_size', 1)
    stride_t = _as_tuple(stride, ndim, 'stride', 1)
    padding_t = _as_tuple(padding, ndim, 'padding', 0)
    dilation_t = _as_tuple(dilation, ndim, 'dilation', 1)
    if bias is not None and tuple(bias.shape) != (weight.shape[0], ):
        raise ValueError(f'{_PREFIX}: bias must be ({weight.shape[0]},) as weight.shape[0], '
                         f'got shape {tuple(bias.shape)}')

    taps = 1
    for k in kernel_t:
        taps *= k
    rows = weight.shape[0]
    if rows < taps or rows % taps:
        raise ValueError(f'{_PREFIX}: weight.shape[0] ({rows}) must be a positive multiple of '
                         f'the kernel\'s taps ({taps} for kernel_size {kernel_t})')
    groups, channels = rows // taps, input.shape[1]
    if channels % groups:
        raise ValueError(f'{_PREFIX}: the number of groups (weight.shape[0] / {taps} = '
                         f'{groups}) must divide the input channels ({channels})')
    if hidden.shape[0] != input.shape[0]:
        raise ValueError(f'{_PREFIX}: hidden batch size {hidden.shape[0]} must equal input '
                         f'batch size {input.shape[0]}')
    if hidden.shape[1] != weight.shape[1]:
        raise ValueError(f'{_PREFIX}: hidden channels {hidden.shape[1]} must equal '
                         f'weight.shape[1] ({weight.shape[1]})')
    if hidden.shape[1] < 1:  # no features: no kernel to generate (the span is empty)
        raise ValueError(f'{_PREFIX}: hidden must have at least one channel (C_hidden >= 1), '
                         f'got shape {tuple(hidden.shape)}')
    if any(size < 1 for size in input.shape[2:]):
        raise ValueError(f'{_PREFIX}: input spatial size must be >= 1, got '
                         f'{tuple(input.shape[2:])}')
    expected_out = output_grid(_PREFIX, input, channels, groups, kernel_t, stride_t, padding_t,
                               dilation_t)
    if tuple(hidden.shape[2:]) != expected_out:
        raise ValueError(f'{_PREFIX}: hidden spatial size {tuple(hidden.shape[2:])} must equal '
                         f'the output size {expected_out} for input {tuple(input.shape[2:])}, '
                         f'kernel_size {kernel_t}, stride {stride_t}, padding {padding_t}, '
                         f'dilation {dilation_t}')

    if ndim == 1:
        input, hidden = input.unsqueeze(2), hidden.unsqueeze(2)
        geometry = FusedGeometry((1, ) + kernel_t, (1, ) + stride_t, (0, ) + padding_t,
                                 (1, ) + dilation_t)
    else:
        geometry = FusedGeometry(kernel_t, stride_t, padding_t, dilation_t)
    return input, hidden, weight, bias, geometry, ndim == 1


def check_fused_op_args(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                        kernel_size: List[int], stride: List[int], padding: List[int],
                        dilation: List[int], grad_output: Optional[Tensor] = None) -> None:
    """Validate the arguments of a ``mmrednet::involution_fused*`` op before a kernel runs.

    The ops take the canonical 2-D layout only (``input`` ``(N, C, H, W)``,
    ``weight`` ``(G*Kh*Kw, C_hidden)``, two values each of the geometry); the
    gradient ops also ``grad_output`` of the output's shape. The C++ kernels
    check the same in ``kernels/involution_fused_cpu.cpp``, for callers without Python.

    Raises:
        ValueError, TypeError: naming the parameter and the expected value.
    """
    if isinstance(input, Tensor) and input.dim() != 4:
        raise ValueError(f'{_PREFIX}: input must be (N, C, H, W), got shape '
                         f'{tuple(input.shape)}')
    if isinstance(weight, Tensor) and weight.dim() != 2:
        raise ValueError(f'{_PREFIX}: weight must be (G * K_h * K_w, C_hidden), got shape '
                         f'{tuple(weight.shape)}')
    canonicalize_fused(input, hidden, weight, bias, kernel_size, stride, padding, dilation)
    if grad_output is None:
        return
    if not isinstance(grad_output, Tensor):
        raise TypeError(f'{_PREFIX}: grad_output must be a tensor')
    _check_like_input('grad_output', grad_output, input)
    expected = (*input.shape[:2], *hidden.shape[2:])
    if tuple(grad_output.shape) != expected:
        raise ValueError(f'{_PREFIX}: grad_output must have the output shape {expected}, got '
                         f'{tuple(grad_output.shape)}')


def is_channels_last(input: Tensor) -> bool:
    """Whether a 4-D ``input`` is channels-last and not also contiguous (the fused
    op then computes channels-last, as ``torch.suggest_memory_format`` would)."""
    return (input.dim() == 4 and not input.is_contiguous()
            and input.is_contiguous(memory_format=torch.channels_last))


def dense_fused(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor]
                ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    """The fused op's tensors without gaps: input and hidden contiguous, or both
    channels-last when input is (:func:`is_channels_last`); weight and bias contiguous."""
    fmt = torch.channels_last if is_channels_last(input) else torch.contiguous_format
    return (input.contiguous(memory_format=fmt), hidden.contiguous(memory_format=fmt),
            weight.contiguous(), None if bias is None else bias.contiguous())
