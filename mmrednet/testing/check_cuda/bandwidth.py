"""The ``bandwidth`` step: the benchmark's CUDA section beside the traffic model's floor."""
from typing import Dict, List, Tuple

import torch

from mmrednet.benchmarks import traffic
from mmrednet.benchmarks.cuda_op import CUDA_DTYPES, benchmark_cuda_op
from mmrednet.benchmarks.cuda_timing import copy_bandwidth
from mmrednet.testing.report import Check


def bandwidth(batch: int, repeat: int) -> Tuple[List[Check], Dict[str, float]]:
    """Forward and backward on the RedNet-50 stage shapes (info: speed is reported, not
    judged); the second value is each row's fraction of the copy bandwidth (a report panel)."""
    copy = copy_bandwidth(repeat)
    rows = benchmark_cuda_op(batch, repeat, copy)
    sm_count = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    floors = {}  # (shape, dtype, direction) -> ms at the measured copy bandwidth
    for name, dtype in CUDA_DTYPES.items():
        for stage in traffic.rednet50_stages(batch, dtype, sm_count, bandwidths={}):
            direction = 'forward' if stage.op == 'forward' else 'backward'
            key = (stage.shape, name, direction)
            floors[key] = floors.get(key, 0.0) + stage.minimal_mb * 1e6 / copy * 1e3
    checks, fractions = [], {}
    for r in rows:
        floor = floors[(r.shape, r.dtype, r.direction)]
        fractions[f'{r.shape.split("x", 1)[1]} {r.dtype} {r.direction[:3]}'] = r.copy_fraction
        checks.append(Check(
            f'bandwidth {r.shape} {r.dtype} {r.direction}', 'info',
            f'{r.ours_ms:.3f} ms (floor {floor:.3f} ms at the copy bandwidth), '
            f'{r.copy_fraction:.0%} of copy, {r.vs_baseline:.1f}x vs one thread an output, '
            f'{r.vs_reference:.1f}x vs unfold', data=dict(floor_ms=floor, **r.__dict__)))
    checks.insert(0, Check('bandwidth copy', 'info',
                           f'device-to-device copy {copy / 1e9:.0f} GB/s', data=dict(copy=copy)))
    return checks, fractions
