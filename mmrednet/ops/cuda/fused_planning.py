"""Launch planning of the fused op's CUDA kernels (``kernels/involution_fused_cuda.cu``).

Pure (no GPU, no CuPy), as :mod:`~mmrednet.ops.cuda.planning`, so the tests,
the host emulation and the self-check plan exactly what the launcher launches.
The fused op's three ops take four entry points: ``forward``, ``grad_input``,
and for ``grad_span`` both ``grad_hidden`` and ``grad_span_weight`` (the span
weight's and bias' gradients, as partial sums over slices of the pixels that
:func:`reduce_span_partials` adds).
"""
from typing import NamedTuple, Sequence, Tuple

import torch
from torch import Tensor

from .planning import (
    HIDDEN_CHUNK,
    MAX_GRID,
    PARAMS,
    TAGS,
    THREADS,
    Launch,
    LaunchParams,
    ceil_div,
    channels_per_thread,
)

OPS = ('forward', 'grad_input', 'grad_hidden', 'grad_span_weight')
"""The fused entry points by op name (the forward's kernel is chosen by :func:`variant`)."""
SQUARE_KERNELS = (3, 7)
"""K x K kernels with their own forward entry point (the K*K values in registers)."""
# What each entry point reads, of (input, hidden, span, bias, grad_output): the
# launcher passes a null pointer for the rest (the emulation checks that they are unread).
READS = {'forward': (True, True, True, True, False),
         'grad_input': (False, True, True, True, True),
         'grad_hidden': (True, False, True, False, True),
         'grad_span_weight': (True, True, False, False, True)}


class FusedShapes(NamedTuple):
    """A fused problem in the launcher's 2-D layout.

    ``input_shape`` is ``(N, C, H, W)``; the output grid ``out`` is hidden's
    ``(Ho, Wo)``; the span weight is ``(groups * Kh * Kw, hidden)``.
    """
    input_shape: Tuple[int, int, int, int]
    hidden: int
    groups: int
    out: Tuple[int, int]
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    has_bias: bool

    @property
    def span_rows(self) -> int:
        return self.groups * self.kernel_size[0] * self.kernel_size[1]


def shapes_of(input: Tensor, hidden: Tensor, weight: Tensor, bias, kernel_size: Sequence[int],
              stride: Sequence[int], padding: Sequence[int],
              dilation: Sequence[int]) -> FusedShapes:
    """The :class:`FusedShapes` of checked fused-op arguments (2-D layout)."""
    taps = kernel_size[0] * kernel_size[1]
    return FusedShapes(tuple(input.shape), hidden.shape[1], weight.shape[0] // taps,
                       tuple(hidden.shape[2:]), tuple(kernel_size), tuple(stride),
                       tuple(padding), tuple(dilation), bias is not None)


def accumulator(dtype: torch.dtype) -> torch.dtype:
    """The kernels' accumulator type for ``dtype``: float, double for double."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def variant(op: str, kernel_size: Sequence[int]) -> str:
    """The entry point of ``op`` for ``kernel_size``: ``forward_kK`` for a square kernel
    of :data:`SQUARE_KERNELS`, ``forward_any`` for every other; the op otherwise."""
    if op != 'forward':
        return op
    kh, kw = kernel_size
    return f'forward_k{kh}' if kh == kw and kh in SQUARE_KERNELS else 'forward_any'


def entry_points(dtype: torch.dtype) -> Tuple[str, ...]:
    """Every fused entry point the launcher may call for ``dtype``."""
    variants = [f'forward_k{k}' for k in SQUARE_KERNELS] + ['forward_any', *OPS[1:]]
    return tuple(f'involution_fused_{v}_{TAGS[dtype]}' for v in variants)


def _chunks(hidden: int) -> int:
    return max(1, ceil_div(hidden, HIDDEN_CHUNK))


def slices(shapes: FusedShapes, sm_count: int) -> int:
    """Pixel slices of ``grad_span_weight``: enough threads to fill the GPU (1024 an SM),
    at most one a pixel."""
    n = shapes.input_shape[0]
    pixels = n * shapes.out[0] * shapes.out[1]
    per_slice = shapes.span_rows * _chunks(shapes.hidden)
    return max(1, min(pixels, ceil_div(sm_count * 1024, per_slice)))


def result_shape(op: str, shapes: FusedShapes, sm_count: int) -> Tuple[int, ...]:
    """The shape of the entry point's result (``grad_span_weight``: the partial sums)."""
    n, c, h, w = shapes.input_shape
    return {'forward': (n, c, *shapes.out), 'grad_input': (n, c, h, w),
            'grad_hidden': (n, shapes.hidden, *shapes.out),
            'grad_span_weight': (slices(shapes, sm_count), shapes.span_rows, shapes.hidden + 1)
            }[op]


def result_dtype(op: str, dtype: torch.dtype) -> torch.dtype:
    return accumulator(dtype) if op == 'grad_span_weight' else dtype


def plan(op: str, shapes: FusedShapes, dtype: torch.dtype, sm_count: int,
         params: LaunchParams = PARAMS) -> Launch:
    """The launch of fused entry point ``op`` (one of :data:`OPS`) for ``shapes``.

    The kernels walk their work items in a grid-stride loop, so ``blocks``
    decides speed only, not results.
    """
    n, c, h, w = shapes.input_shape
    ho, wo = shapes.out
    group_channels = c // shapes.groups
    per_thread, slice_count = 1, 1  # unused by the span entry points / all but the last
    if op in ('forward', 'grad_input'):
        plane = ho * wo if op == 'forward' else h * w

        def items_for(channels: int) -> int:
            return n * shapes.groups * ceil_div(group_channels, channels) * plane

        per_thread = channels_per_thread(group_channels, items_for, sm_count, params)
        items = items_for(per_thread)
    elif op == 'grad_hidden':
        items = n * ceil_div(shapes.hidden, HIDDEN_CHUNK) * ho * wo
    elif op == 'grad_span_weight':
        slice_count = slices(shapes, sm_count)
        items = slice_count * shapes.span_rows * _chunks(shapes.hidden)
    else:
        raise ValueError(f'unknown fused involution entry point {op!r}')
    blocks = max(1, min(ceil_div(items, THREADS), MAX_GRID))
    geometry = (n, c, shapes.groups, shapes.hidden, h, w, ho, wo, *shapes.kernel_size,
                *shapes.stride, *shapes.padding, *shapes.dilation, per_thread,
                int(shapes.has_bias), slice_count)
    return Launch(f'involution_fused_{variant(op, shapes.kernel_size)}_{TAGS[dtype]}', blocks,
                  geometry)


def reduce_span_partials(partial: Tensor, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
    """``(grad_weight, grad_bias)`` from ``grad_span_weight``'s partial sums.

    Args:
        partial (Tensor): ``(slices, G*Kh*Kw, C_hidden + 1)`` in the accumulator type.
        dtype: the op's dtype, rounded to once, after the sum over the slices.

    Returns:
        tuple: ``(G*Kh*Kw, C_hidden)`` and ``(G*Kh*Kw,)``, in ``dtype``.
    """
    total = partial.sum(0)
    return total[:, :-1].to(dtype).contiguous(), total[:, -1].to(dtype).contiguous()
