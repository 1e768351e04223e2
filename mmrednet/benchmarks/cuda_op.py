"""The CUDA op benchmark: the launcher's kernels on the RedNet-50 stage shapes.

Forward and backward, fp32 and fp16, as a fraction of the copy bandwidth
measured in the run, beside the traffic model's floor (:mod:`.traffic`), and
against the unfold reference (a) and the one-thread-per-output kernel (b) of
:mod:`.cuda_baseline`.
"""
import math
from dataclasses import dataclass
from typing import Dict, List

import torch
from rich.progress import track

from mmrednet.ops import involution_reference

from . import traffic
from .cuda_baseline import baseline
from .cuda_timing import cuda_ms
from .op import STAGE_GEOMETRY, STAGES

CUDA_TARGETS = dict(copy_fraction=0.7, baseline_speedup=3.0, retina_time_ratio=1.0)
CUDA_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16}


@dataclass
class CudaOpRow:
    shape: str
    dtype: str
    direction: str  # forward, or backward (grad_input + grad_weight)
    ours_ms: float
    floor_ms: float  # the traffic model's minimal bytes at the measured copy bandwidth
    reference_ms: float  # (a) the unfold reference
    baseline_ms: float  # (b) one thread per output (nan without CuPy)
    ours_gbs: float  # minimal bytes / time
    copy_fraction: float  # of the device-to-device copy bandwidth
    vs_reference: float
    vs_baseline: float


def _op_calls(x, w, grad_out):
    """Forward and backward of ours, (a) and (b), as (direction, {name: fn})."""
    ops = torch.ops.mmrednet
    shapes = (x.shape, w.shape, *STAGE_GEOMETRY)
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    ref_out = involution_reference(xr, wr, *STAGE_GEOMETRY)

    def reference_backward():
        torch.autograd.grad(ref_out, (xr, wr), grad_out, retain_graph=True)

    return [
        ('forward', dict(
            ours=lambda: ops.involution(x, w, *STAGE_GEOMETRY),
            reference=lambda: involution_reference(x, w, *STAGE_GEOMETRY),
            baseline=lambda: baseline('forward', x, w, *shapes))),
        ('backward', dict(
            ours=lambda: (ops.involution_grad_input(grad_out, x, w, *STAGE_GEOMETRY),
                          ops.involution_grad_weight(grad_out, x, w, *STAGE_GEOMETRY)),
            reference=reference_backward,
            baseline=lambda: (baseline('grad_input', grad_out, w, *shapes),
                              baseline('grad_weight', grad_out, x, *shapes)))),
    ]


def _minimal_bytes(x: torch.Tensor, w: torch.Tensor) -> Dict[str, int]:
    """DRAM floor of forward and of backward (grad_input + grad_weight), by the traffic model."""
    sm_count = torch.cuda.get_device_properties(x.device).multi_processor_count
    floor = {op: traffic.traffic(op, x.shape, w.shape, *STAGE_GEOMETRY, x.dtype, sm_count).minimal
             for op in ('forward', 'grad_input', 'grad_weight')}
    return dict(forward=floor['forward'], backward=floor['grad_input'] + floor['grad_weight'])


def benchmark_cuda_op(batch: int, repeat: int, bandwidth: float) -> List[CudaOpRow]:
    rows = []
    for (dtype_name, dtype), (channels, size) in track(
            [(d, s) for d in CUDA_DTYPES.items() for s in STAGES], description='CUDA op shapes'):
        x = torch.randn(batch, channels, size, size, device='cuda', dtype=dtype)
        w = torch.randn(batch, channels // 16, 7, 7, size, size, device='cuda', dtype=dtype)
        grad_out = torch.randn_like(x)
        minimal = _minimal_bytes(x, w)
        for direction, calls in _op_calls(x, w, grad_out):
            times = {}
            for name, fn in calls.items():
                try:
                    times[name] = cuda_ms(fn, repeat if name == 'ours' else max(1, repeat // 2))
                except RuntimeError as exc:  # no CuPy for the baseline, or out of memory
                    print(f'{name} {direction} {tuple(x.shape)} {dtype_name}: {exc}')
                    times[name] = math.nan
            gbs = minimal[direction] / (times['ours'] * 1e-3)
            rows.append(
                CudaOpRow(f'{batch}x{channels}x{size}x{size}', dtype_name, direction,
                          times['ours'], minimal[direction] / bandwidth * 1e3,
                          times['reference'], times['baseline'], gbs / 1e9,
                          gbs / bandwidth, times['reference'] / times['ours'],
                          times['baseline'] / times['ours']))
        del x, w, grad_out
        torch.cuda.empty_cache()
    return rows
