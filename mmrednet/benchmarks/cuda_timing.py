"""Timing on a CUDA device: CUDA events, and the device-to-device copy bandwidth."""
from typing import Callable

import torch


def cuda_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median time of ``fn()`` in milliseconds by CUDA events, after a warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(max(1, repeat)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth(repeat: int, nbytes: int = 2**30) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), measured now."""
    buffers = [torch.empty(nbytes // 4, device='cuda') for _ in range(2)]
    seconds = cuda_ms(lambda: buffers[1].copy_(buffers[0]), max(repeat, 10)) * 1e-3
    buffers.clear()
    torch.cuda.empty_cache()
    return 2 * nbytes / seconds
