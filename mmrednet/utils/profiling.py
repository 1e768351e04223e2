"""Timing and memory measurement shared by the benchmark tools and the memory tests."""
import time
from typing import Callable, Dict, Hashable, Iterable, List, Sequence, Set, Tuple, TypeVar

import torch
from torch import nn

T = TypeVar('T')


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median(values: Sequence[float]) -> float:
    """The middle value (the upper one of an even count): what the benchmarks report."""
    return sorted(values)[len(values) // 2]


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


def interleaved_times(calls: Dict[Hashable, Callable[[], object]], rounds: int, device='cpu',
                      progress: Callable[[Iterable[int]], Iterable[int]] = iter
                      ) -> Dict[Hashable, List[float]]:
    """Wall times of each call, the calls interleaved, the order reversed every other round.

    Every round times each call once (no warm-up: warm them up first), in the
    order of ``calls`` in even rounds and in reverse in odd ones, so that a
    change of the machine's load or clock during a round, or one call
    warming a cache for the next, favours neither side: pair the lists by
    round for ratios.

    Args:
        calls (dict): name -> function to time.
        rounds (int): how many times each is timed.
        device: where they run (CUDA is synchronized around each call).
        progress (callable): wraps ``range(rounds)``, e.g. a progress bar.

    Returns:
        dict: name -> ``rounds`` times in seconds, in round order.
    """
    names = list(calls)
    times: Dict[Hashable, List[float]] = {name: [] for name in names}
    for index in progress(range(rounds)):
        for name in names if index % 2 == 0 else reversed(names):
            times[name].append(time_call(calls[name], device, repeat=1, warmup=0))
    return times


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


def saved_bytes_inside(model: nn.Module, fn: Callable[[], T],
                       inside: Callable[[nn.Module], bool],
                       inputs: Sequence[torch.Tensor] = ()) -> Tuple[int, T]:
    """Bytes that modules matching ``inside`` add to what autograd keeps for backward.

    Runs ``fn()`` (a forward of ``model``) under saved-tensor hooks and counts
    the distinct storages that are first saved while a submodule of ``model``
    satisfying ``inside`` is running. A storage first saved elsewhere (a
    layer's input, saved by the layer before) is not counted again, nor are
    ``inputs``, parameters and buffers, which exist anyway.

    Returns:
        tuple: the bytes, and ``fn()``'s result (backward it to free the graph).
    """
    state = {t.untyped_storage().data_ptr()
             for t in (*inputs, *model.parameters(), *model.buffers())}
    stack: List[nn.Module] = []
    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(lambda m, _: stack.append(m)))
        handles.append(module.register_forward_hook(lambda *_: stack.pop() and None))
    seen: Set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in seen and ptr not in state:
            seen.add(ptr)
            if any(inside(m) for m in stack):
                total += storage.nbytes()
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            result = fn()
    finally:
        for handle in handles:
            handle.remove()
    return total, result
