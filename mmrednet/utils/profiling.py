"""Timing and peak-memory measurement shared by the benchmark tools."""
import time
from typing import Callable, List

import torch


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device='cpu', repeat: int = 5, warmup: int = 1,
              min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` in seconds, after ``warmup`` calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _synchronize(device)
    times: List[float] = []
    start_all = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start_all < min_seconds:
        start = time.perf_counter()
        fn()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    # The profiler records every CPU allocation with the running total of
    # allocated bytes; the peak of that total, less the total before the call,
    # is what the call needed on top of what already existed.
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = list(prof.profiler.kineto_results.experimental_event_tree())
    allocations = []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation:
            fields = event.extra_fields
            allocations.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
    if not allocations:
        return 0
    allocations.sort()
    before = allocations[0][2] - allocations[0][1]
    return max(total for _, _, total in allocations) - before


def peak_memory(fn: Callable[[], object], device='cpu') -> int:
    """Peak bytes allocated by ``fn()`` beyond what was allocated before it.

    CPU: from the allocation events of torch's profiler. CUDA: from the caching
    allocator's statistics.
    """
    device = torch.device(device)
    if device.type != 'cuda':
        return _cpu_peak_bytes(fn)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
