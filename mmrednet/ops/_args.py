"""Argument checking shared by every involution entry point.

All implementations work on the 2-D layout; the 1-D case is the 2-D case with a
height of one, so it is folded in here, once, instead of in every backend.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

IntOrPair = Union[int, Sequence[int]]

# Bounds of the geometry, the same in the C++ kernels (kernels/involution_cpu.cpp):
# a stride, padding or dilation value fits 32 bits (the CUDA kernels' coordinates),
# and the padded problem, (C + G * Kh * Kw) * (H + 2 * pad_h) * (W + 2 * pad_w)
# values, at most 2^40, so that no scratch size or index of the kernels wraps in
# 64 bits (each is a small multiple of it).
MAX_GEOMETRY = 2**31 - 1
MAX_PADDED_PROBLEM = 2**40


def _as_tuple(value: IntOrPair, ndim: int, name: str, minimum: int) -> Tuple[int, ...]:
    values = (value,) * ndim if isinstance(value, int) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, (int, torch.SymInt)) for v in values):
        raise ValueError(f'involution: {name} must be an int or {ndim} ints, got {value!r}')
    if any(v < minimum for v in values):
        raise ValueError(f'involution: {name} must be >= {minimum}, got {value!r}')
    if any(v > MAX_GEOMETRY for v in values):
        raise ValueError(f'involution: {name} must be <= {MAX_GEOMETRY} (2^31 - 1), got '
                         f'{value!r}')
    return values


def _check_padded_problem(channels: int, groups: int, kernel: Tuple[int, int],
                          size: Tuple[int, int], padding: Tuple[int, int]) -> None:
    """The padded problem (2-D layout) is at most ``MAX_PADDED_PROBLEM`` values.

    Exact on plain ints; not checked while tracing with symbolic sizes (it
    would add a guard on them), where the kernels check it on every call.
    """
    numbers = (channels, groups, *kernel, *size)
    if not all(isinstance(v, int) for v in numbers):
        return
    values = ((channels + groups * kernel[0] * kernel[1]) * (size[0] + 2 * padding[0]) *
              (size[1] + 2 * padding[1]))
    if values > MAX_PADDED_PROBLEM:
        raise ValueError(
            f'involution: the padded problem, (channels + groups * Kh * Kw) * '
            f'(H + 2 * padding[0]) * (W + 2 * padding[1]) = ({channels} + {groups} * '
            f'{kernel[0]} * {kernel[1]}) * ({size[0]} + 2 * {padding[0]}) * ({size[1]} + 2 * '
            f'{padding[1]}), must be at most 2^40 values')


def _check_like_input(name: str, tensor: Tensor, input: Tensor) -> None:
    """``tensor`` (the argument called ``name``) is on ``input``'s device, in its dtype."""
    if tensor.device != input.device:
        raise ValueError(f'involution: {name} is on {tensor.device} but input is on '
                         f'{input.device}; both must be on the same device')
    if tensor.dtype != input.dtype:
        raise TypeError(f'involution: {name} dtype {tensor.dtype} must equal input dtype '
                        f'{input.dtype}')


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Length of one output axis, as for a convolution with the same geometry."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def is_pixel_major(weight: Tensor) -> bool:
    """Whether a kernel ``(N, G, Kh, Kw, Ho, Wo)`` is ``(N, Ho, Wo, G, Kh, Kw)`` in memory.

    That is how a channels-last 1x1 convolution writes the generated kernel
    (its ``G * Kh * Kw`` output channels last), viewed as the op's kernel. A
    tensor that is also contiguous counts as contiguous.
    """
    return (weight.dim() == 6 and not weight.is_contiguous()
            and weight.permute(0, 4, 5, 1, 2, 3).is_contiguous())


def dense(input: Tensor, weight: Tensor) -> Tuple[Tensor, Tensor]:
    """``input`` and ``weight`` of the canonical op without gaps: contiguous, or
    channels-last input with a pixel-major kernel (kept as it is; see
    :func:`is_pixel_major`), the layout a channels-last model produces."""
    if is_pixel_major(weight):
        return input.contiguous(memory_format=torch.channels_last), weight
    return input.contiguous(), weight.contiguous()


@dataclass(frozen=True)
class Geometry2d:
    """Stride, padding and dilation of the 2-D problem, as (h, w) pairs."""
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]


def canonicalize(input: Tensor, weight: Tensor, stride: IntOrPair, padding: IntOrPair,
                 dilation: IntOrPair) -> Tuple[Tensor, Tensor, Geometry2d, bool]:
    """Validate the arguments and bring a 1-D problem into the 2-D layout.

    Args:
        input (Tensor): ``(N, C, H, W)`` or ``(N, C, L)``.
        weight (Tensor): ``(N, G, K, K, Ho, Wo)`` or ``(N, G, K, Lo)``.
        stride, padding, dilation: an int or one int per spatial axis.

    Returns:
        tuple: ``input`` as ``(N, C, H, W)``, ``weight`` as
        ``(N, G, Kh, Kw, Ho, Wo)``, the 2-D geometry, and whether the problem
        was 1-D (so the caller can drop the height axis again).
    """
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError('involution: input and weight must be tensors')
    if input.dim() not in (3, 4):
        raise ValueError('involution: input must be (N, C, L) or (N, C, H, W), '
                         f'got shape {tuple(input.shape)}')
    ndim = input.dim() - 2
    if weight.dim() != 2 + 2 * ndim:
        expected = '(N, G, K, L_out)' if ndim == 1 else '(N, G, K, K, H_out, W_out)'
        raise ValueError(f'involution: for a {ndim}-D input, weight must be {expected}, '
                         f'got shape {tuple(weight.shape)}')
    _check_like_input('weight', weight, input)
    if not input.is_floating_point():
        raise TypeError(f'involution: input must be a floating point tensor, got {input.dtype}')
    stride_t = _as_tuple(stride, ndim, 'stride', 1)
    padding_t = _as_tuple(padding, ndim, 'padding', 0)
    dilation_t = _as_tuple(dilation, ndim, 'dilation', 1)

    n, channels = input.shape[:2]
    groups = weight.shape[1]
    kernel = tuple(weight.shape[2:2 + ndim])
    if weight.shape[0] != n:
        raise ValueError(f'involution: weight batch size {weight.shape[0]} must equal input '
                         f'batch size {n}')
    if groups < 1 or channels % groups:
        raise ValueError(f'involution: the number of groups (weight.shape[1] = {groups}) must '
                         f'divide the input channels ({channels})')
    if any(k < 1 for k in kernel):
        raise ValueError(f'involution: kernel size must be >= 1, got {kernel}')
    if any(size < 1 for size in input.shape[2:]):
        raise ValueError(f'involution: input spatial size must be >= 1, got '
                         f'{tuple(input.shape[2:])}')
    expected_out = output_grid('involution', input, channels, groups, kernel, stride_t,
                               padding_t, dilation_t)
    if tuple(weight.shape[2 + ndim:]) != expected_out:
        raise ValueError(f'involution: weight spatial size {tuple(weight.shape[2 + ndim:])} '
                         f'must equal the output size {expected_out} for input '
                         f'{tuple(input.shape[2:])}, stride {stride_t}, padding {padding_t}, '
                         f'dilation {dilation_t}')

    if ndim == 1:
        input = input.unsqueeze(2)
        weight = weight.unsqueeze(2).unsqueeze(4)
        geometry = Geometry2d((1, ) + stride_t, (0, ) + padding_t, (1, ) + dilation_t)
    else:
        geometry = Geometry2d(stride_t, padding_t, dilation_t)
    return input, weight, geometry, ndim == 1


def output_grid(op: str, input: Tensor, channels: int, groups: int, kernel: Tuple[int, ...],
                stride: Tuple[int, ...], padding: Tuple[int, ...],
                dilation: Tuple[int, ...]) -> Tuple[int, ...]:
    """The output grid of ``op`` on ``input``, after bounding the padded problem (in the 2-D
    layout, as the ops see it: a 1-D problem has a height of one); refuses an empty grid."""
    _check_padded_problem(channels, groups, ((1, ) + kernel)[-2:],
                          ((1, ) + tuple(input.shape[2:]))[-2:], ((0, ) + padding)[-2:])
    grid = tuple(output_size(size, k, s, p, d)
                 for size, k, s, p, d in zip(input.shape[2:], kernel, stride, padding, dilation,
                                             strict=True))
    if any(o < 1 for o in grid):
        raise ValueError(f'{op}: input spatial size {tuple(input.shape[2:])} is too small '
                         f'for kernel {kernel}, padding {padding}, dilation {dilation}')
    return grid


def check_op_args(input: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int], grad_output: Optional[Tensor] = None) -> None:
    """Validate the arguments of a ``mmrednet::involution*`` op before a kernel runs.

    The ops take the canonical 2-D layout only (``input`` ``(N, C, H, W)``, two
    values each of stride, padding and dilation); the gradient ops also
    ``grad_output`` of the output's shape. The C++ kernels check the same in
    ``kernels/involution_cpu.cpp``, for callers without Python.

    Raises:
        ValueError, TypeError: naming the parameter and the expected value.
    """
    if isinstance(input, Tensor) and input.dim() != 4:
        raise ValueError(f'involution: input must be (N, C, H, W), got shape '
                         f'{tuple(input.shape)}')
    canonicalize(input, weight, stride, padding, dilation)
    if grad_output is None:
        return
    if not isinstance(grad_output, Tensor):
        raise TypeError('involution: grad_output must be a tensor')
    _check_like_input('grad_output', grad_output, input)
    expected = (*input.shape[:2], *weight.shape[4:])
    if tuple(grad_output.shape) != expected:
        raise ValueError(f'involution: grad_output must have the output shape {expected}, got '
                         f'{tuple(grad_output.shape)}')
