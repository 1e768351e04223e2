"""Timing and peak-memory measurement shared by the benchmark tools."""
import time
from typing import Callable, List, Tuple

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


def _cpu_allocations(fn: Callable[[], object]) -> Tuple[int, int, int]:
    """Run ``fn()`` under torch's profiler and read its CPU allocation events.

    Every allocation event carries the running total of allocated bytes.
    Returns the total before the call, its peak during the call and the total
    when the call returned (with the call's result still alive).
    """
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    events = list(prof.profiler.kineto_results.experimental_event_tree())
    allocations = []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation:
            fields = event.extra_fields
            allocations.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
    if not allocations:
        return 0, 0, 0
    allocations.sort()
    before = allocations[0][2] - allocations[0][1]
    return before, max(total for _, _, total in allocations), allocations[-1][2]


def peak_memory(fn: Callable[[], object], device='cpu') -> int:
    """Peak bytes allocated by ``fn()`` beyond what was allocated before it.

    CPU: from the allocation events of torch's profiler. CUDA: from the caching
    allocator's statistics.
    """
    device = torch.device(device)
    if device.type != 'cuda':
        before, peak, _ = _cpu_allocations(fn)
        return peak - before
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def retained_memory(fn: Callable[[], object], device='cpu') -> int:
    """Bytes allocated by ``fn()`` that are still allocated when it returns.

    With ``fn`` computing a loss whose result is kept, that is the memory the
    autograd graph holds for backward as the allocator sees it (a tensor saved
    as a token but still referenced elsewhere counts).
    """
    device = torch.device(device)
    if device.type != 'cuda':
        before, _, after = _cpu_allocations(fn)
        return after - before
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    del result
    return torch.cuda.memory_allocated(device) - before
