"""Launch planning of the CUDA kernels: entry point, grid and geometry arguments of a call.

Pure (no GPU, no CuPy), so the tests, the traffic model and the host emulation
plan exactly what the launcher launches.
"""
from typing import Callable, List, NamedTuple, Sequence, Tuple

import torch


class LaunchParams(NamedTuple):
    """The kernels' compile-time launch parameters, passed to the source as macros.

    ``plan`` and ``compile_options`` take the same instance, so the launch and the
    binary agree; ``tools/check_cuda.py`` sweeps them on the user's GPU.
    """
    rows: int = 4  # output (grad_input: input) rows a thread in the register-tiled kernels
    channels: int = 8  # most channels of a group a thread computes (forward, grad_input)
    min_blocks: int = 1  # __launch_bounds__ hint: blocks of THREADS an SM should hold


class Launch(NamedTuple):
    """What the launcher sends to one kernel: entry point, blocks, geometry arguments."""
    kernel: str
    blocks: int
    geometry: Tuple[int, ...]


THREADS = 256  # threads a block (the kernels' __launch_bounds__)
HIDDEN_CHUNK = 8  # hidden channels a thread of the fused op's span gradients accumulates
PARAMS = LaunchParams()  # what mmrednet launches
OPS = ('forward', 'grad_input', 'grad_weight')
TILED_KERNEL_SIZES = (3, 7)  # vertical kernel sizes with a register-tiled kernel
TILED_STRIDES = {'forward': (1, 2), 'grad_input': (1, ), 'grad_weight': (1, 2)}
MAX_SIDE = 2**30  # the kernels use int coordinates inside a plane
MAX_GRID = 2**31 - 1
# The dtypes the kernels compute in, and the suffix of their entry points.
TAGS = {torch.float32: 'f32', torch.float64: 'f64', torch.float16: 'f16', torch.bfloat16: 'bf16'}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def variant(op: str, kernel_h: int, stride_h: int, dilation_h: int) -> str:
    """``kKsS`` for a register-tiled kernel, ``any`` for the generic one."""
    # grad_input gathers: a vertical stride would leave holes in its strips.
    if dilation_h == 1 and kernel_h in TILED_KERNEL_SIZES and stride_h in TILED_STRIDES[op]:
        return f'k{kernel_h}s{stride_h}'
    return 'any'


def entry_points(dtype: torch.dtype) -> List[str]:
    """Every entry point the launcher may call for ``dtype``."""
    tag = TAGS[dtype]
    names = []
    for op in OPS:
        tiled = [f'k{k}s{s}' for k in TILED_KERNEL_SIZES for s in TILED_STRIDES[op]]
        names += [f'involution_{op}_{v}_{tag}' for v in (*tiled, 'any')]
    return names


def channels_per_thread(group_channels: int, items_for: Callable[[int], int], sm_count: int,
                        params: LaunchParams = PARAMS) -> int:
    """Channels of a group a thread computes, given the work items ``items_for(channels)``.

    More channels a thread means fewer re-reads (or, in the fused kernels,
    recomputations) of the kernel values; fewer means more threads. Trade the
    first for the second only while the grid has under 1024 threads an SM (a few
    waves at the tiled kernels' ~160 registers a thread).
    """
    per_thread = max(1, min(group_channels, params.channels))
    while per_thread > 2 and items_for(per_thread) < sm_count * 1024:
        per_thread = ceil_div(per_thread, 2)
    return per_thread


def plan(op: str, input_shape: Sequence[int], weight_shape: Sequence[int],
         stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
         dtype: torch.dtype, sm_count: int, params: LaunchParams = PARAMS) -> Launch:
    """The launch of ``op`` ('forward', 'grad_input', 'grad_weight') for these shapes.

    The kernels walk their work items in a grid-stride loop, so ``blocks``
    decides speed only, not results.

    Args:
        input_shape: ``(N, C, H, W)`` of the input (the launcher's 2-D layout).
        weight_shape: ``(N, G, Kh, Kw, Ho, Wo)`` of the generated kernel.
        sm_count: streaming multiprocessors of the device (the grid fills them).
    """
    n, c, h, w = input_shape
    _, g, kh, kw, ho, wo = weight_shape
    group_channels = c // g
    name = variant(op, kh, stride[0], dilation[0])
    tiled = name != 'any'
    if op == 'grad_weight':
        per_thread = 1  # unused: a grad_weight thread sums over all channels of its group
        items = n * g * (kw * ceil_div(ho, params.rows) * wo if tiled else kh * kw * ho * wo)
    elif op in ('forward', 'grad_input'):
        rows, cols = (ho, wo) if op == 'forward' else (h, w)
        plane = (ceil_div(rows, params.rows) if tiled else rows) * cols

        def items_for(channels: int) -> int:
            return n * g * ceil_div(group_channels, channels) * plane

        per_thread = channels_per_thread(group_channels, items_for, sm_count, params)
        items = items_for(per_thread)
    else:
        raise ValueError(f'unknown involution op {op!r}')
    blocks = max(1, min(ceil_div(items, THREADS), MAX_GRID))
    geometry = (n, c, g, h, w, ho, wo, kh, kw, stride[0], stride[1], padding[0], padding[1],
                dilation[0], dilation[1], per_thread)
    return Launch(f'involution_{op}_{name}_{TAGS[dtype]}', blocks, geometry)


def compile_options(dtype: torch.dtype, params: LaunchParams = PARAMS) -> Tuple[str, ...]:
    """NVRTC options of the module for one dtype (the file holds all of them)."""
    return ('-std=c++17', '-DMMREDNET_SELECT_DTYPE', f'-DMMREDNET_WITH_{TAGS[dtype].upper()}',
            *macros(params))


def macros(params: LaunchParams = PARAMS) -> Tuple[str, ...]:
    """The launch parameters as the ``-D`` options of the kernel source."""
    return (f'-DMMREDNET_THREADS={THREADS}', f'-DMMREDNET_ROWS={params.rows}',
            f'-DMMREDNET_CHANNELS={params.channels}',
            f'-DMMREDNET_MIN_BLOCKS={params.min_blocks}',
            f'-DMMREDNET_HIDDEN_CHUNK={HIDDEN_CHUNK}')
