"""Memory traffic of the CUDA kernels' launch plan: a pure model, no GPU needed.

For one op and one geometry it gives

* ``minimal``: the compulsory DRAM bytes, every tensor read or written once
  (forward reads x and w and writes out; grad_input reads grad_out and w and
  writes grad_x; grad_weight reads grad_out and x and writes grad_w);
* ``requested``: the bytes the plan's threads load and store, counted load by
  load from the kernels' loop structure (``kernels/involution_cuda.cu``): the
  kernel values re-read once per chunk of channels, the input rows re-read by
  neighbouring strips and tap columns, taps outside the input skipped as the
  kernels skip them. Each of these loads is served by L1, L2 or DRAM; the
  ratio to ``minimal`` is what the caches must absorb for the kernel to run at
  the DRAM floor.

and the times these bytes take at a bandwidth. ``tools/benchmark_involution.py``
prints it for the RedNet-50 stage shapes (:func:`rednet50_stages`), alone
without a GPU and beside the measured times with one; ``python -m
mmrednet.benchmarks.traffic`` prints it alone.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from mmrednet.ops.cuda import planning, selfcheck
from mmrednet.ops.cuda.planning import PARAMS, LaunchParams

# Peak DRAM bandwidth from NVIDIA's datasheets (bytes/s).
BANDWIDTHS = {'H100 SXM': 3.35e12, 'H200': 4.8e12}
# RedNet-50's stage involutions: (channels, feature size); K=7, stride 1, padding 3,
# 16 channels a group. The first block of stages 2-4 has stride 2 (not modelled here).
REDNET50_STAGES = ((64, 56), (128, 28), (256, 14), (512, 7))


@dataclass(frozen=True)
class Traffic:
    """Bytes of one op. ``loads`` counts element loads per tensor (name -> count)."""
    op: str
    kernel: str
    element_size: int
    minimal: int
    requested: int
    loads: Dict[str, int]
    stores: int

    def seconds(self, bandwidth: float, requested: bool = False) -> float:
        return (self.requested if requested else self.minimal) / bandwidth


def _valid(size: int, out: int, kernel: int, stride: int, pad: int, dilation: int) -> List[int]:
    """For each output position: how many taps read inside the input (gather view)."""
    return [sum(0 <= o * stride + k * dilation - pad < size for k in range(kernel))
            for o in range(out)]


def _valid_back(size: int, out: int, kernel: int, stride: int, pad: int,
                dilation: int) -> List[int]:
    """For each input position: how many taps of some output read it (scatter view)."""
    counts = []
    for position in range(size):
        n = 0
        for k in range(kernel):
            numerator = position + pad - k * dilation
            n += numerator >= 0 and numerator % stride == 0 and numerator // stride < out
        counts.append(n)
    return counts


def _rows_loaded(first_rows: Sequence[int], length: int, limit: int) -> int:
    """Sum over strips of the rows of ``range(first, first + length)`` inside [0, limit)."""
    return sum(max(0, min(first + length, limit) - max(first, 0)) for first in first_rows)


def traffic(op: str, input_shape: Sequence[int], weight_shape: Sequence[int],
            stride: Sequence[int], padding: Sequence[int], dilation: Sequence[int],
            dtype: torch.dtype, sm_count: int,
            params: LaunchParams = PARAMS) -> Traffic:
    """The traffic of ``planning.plan(op, ...)`` (2-D layout, as the launcher sees it)."""
    launch = planning.plan(op, input_shape, weight_shape, stride, padding, dilation, dtype,
                           sm_count, params)
    n, c, h, w = input_shape
    _, g, kh, kw, ho, wo = weight_shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    per_thread = launch.geometry[-1]
    chunks = math.ceil(c // g / per_thread)
    tiled = planning.variant(op, kh, sh, dh) != 'any'
    rows = params.rows
    size = torch.empty((), dtype=dtype).element_size()
    x_size, out_size, w_size = n * c * h * w, n * c * ho * wo, n * g * kh * kw * ho * wo

    if op in ('forward', 'grad_weight'):
        columns = sum(_valid(w, wo, kw, sw, pw, dw))  # (output column, tap column) pairs
        if tiled:  # a thread: `rows` output rows x 1 column; x rows under the strip
            strips = range(0, ho, rows)
            x_rows = _rows_loaded([i0 * sh - ph for i0 in strips], (rows - 1) * sh + kh, h)
            per_row = kh * ho  # kernel (or grad_out) values a valid tap column loads
        else:  # a thread: one output pixel (forward) or one kernel value (grad_weight)
            x_rows = sum(_valid(h, ho, kh, sh, ph, dh))
            per_row = x_rows
        if op == 'forward':
            loads = {'weight': n * g * chunks * columns * per_row,
                     'input': n * c * columns * x_rows}
            stores = out_size
        else:
            go_rows = ho if tiled else x_rows
            loads = {'grad_output': n * c * columns * go_rows, 'input': n * c * columns * x_rows}
            stores = w_size
    elif op == 'grad_input':
        columns = sum(_valid_back(w, wo, kw, sw, pw, dw))  # (input column, tap column) pairs
        if tiled:  # a thread: `rows` input rows x 1 column, gathering output rows
            first = [h0 + ph - (kh - 1) for h0 in range(0, h, rows)]
            go_rows = _rows_loaded(first, rows + kh - 1, ho)
            # kernel values: tap u of strip row r is output row first + r - u + kh - 1
            w_rows = sum(_rows_loaded([f + kh - 1 - u for f in first], rows, ho)
                         for u in range(kh))
        else:
            go_rows = w_rows = sum(_valid_back(h, ho, kh, sh, ph, dh))
        loads = {'weight': n * g * chunks * columns * w_rows,
                 'grad_output': n * c * columns * go_rows}
        stores = x_size
    else:
        raise ValueError(f'unknown involution op {op!r}')
    # Each op reads two of x, w, out (or their gradients) and writes the third.
    minimal = (x_size + w_size + out_size) * size
    requested = (sum(loads.values()) + stores) * size
    return Traffic(op, launch.kernel, size, minimal, requested, loads, stores)


@dataclass(frozen=True)
class StageTraffic:
    shape: str
    op: str
    kernel: str
    minimal_mb: float
    requested_mb: float
    reuse_needed: float  # requested / minimal: the share the caches must serve
    times_us: Dict[str, float]  # device -> minimal bytes / peak bandwidth


def rednet50_stages(batch: int = 32, dtype: torch.dtype = torch.float16, sm_count: int = 132,
                    params: LaunchParams = PARAMS,
                    bandwidths: Dict[str, float] = BANDWIDTHS) -> List[StageTraffic]:
    """The traffic model of the RedNet-50 stage involutions (K=7, stride 1, 16 channels a group)."""
    rows = []
    for channels, size in REDNET50_STAGES:
        input_shape = (batch, channels, size, size)
        weight_shape = (batch, channels // 16, 7, 7, size, size)
        for op in ('forward', 'grad_input', 'grad_weight'):
            t = traffic(op, input_shape, weight_shape, (1, 1), (3, 3), (1, 1), dtype, sm_count,
                        params)
            rows.append(StageTraffic(f'{batch}x{channels}x{size}x{size}', op, t.kernel,
                                     t.minimal / 1e6, t.requested / 1e6, t.requested / t.minimal,
                                     {d: t.seconds(bw) * 1e6 for d, bw in bandwidths.items()}))
    return rows


def selfcheck_traffic(kernel: str, sm_count: int = 132,
                      params: LaunchParams = PARAMS) -> Traffic:
    """The traffic of entry point ``kernel`` on its first-use self-check probe
    (``mmrednet.ops.cuda.selfcheck.probe``): the bytes the check adds to the first call, besides
    the float64 portable path on the same probe."""
    dtype = next(d for d, tag in planning.TAGS.items() if kernel.endswith(f'_{tag}'))
    return traffic(selfcheck.op_of(kernel), *selfcheck.probe(kernel, params), dtype, sm_count,
                   params)


DTYPE_NAMES = {'fp32': torch.float32, 'fp16': torch.float16}


def print_tables(console, batch: int = 32, sm_count: int = 132) -> None:
    """The RedNet-50 stage model as rich tables, one a dtype (the benchmark prints them)."""
    from rich.table import Table
    for name, dtype in DTYPE_NAMES.items():
        rows = rednet50_stages(batch, dtype, sm_count)
        devices = list(rows[0].times_us)
        table = Table(title=f'CUDA traffic model, {name}: minimal DRAM bytes, bytes the launch '
                      f'plan loads and stores, and the floor at peak bandwidth ({sm_count} SMs)')
        for col in ('shape', 'op', 'kernel', 'minimal MB', 'plan MB', 'plan / minimal',
                    *(f'{d} floor us' for d in devices)):
            table.add_column(col, justify='right')
        for r in rows:
            table.add_row(r.shape, r.op, r.kernel.split('_', 1)[1], f'{r.minimal_mb:.1f}',
                          f'{r.requested_mb:.1f}', f'{r.reuse_needed:.1f}x',
                          *(f'{r.times_us[d]:.1f}' for d in devices))
        console.print(table)


if __name__ == '__main__':
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(description='The CUDA traffic model of the RedNet-50 stages')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--sm-count', type=int, default=132, help='132: H100 SXM and H200')
    args = parser.parse_args()
    print_tables(Console(width=160), args.batch, args.sm_count)
