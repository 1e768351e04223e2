"""The CPU op benchmark: each kernel against the copy bandwidth, and the op against unfold.

Kernels: forward, grad_input and grad_weight on the RedNet-50 stage shapes, in
both layouts the CPU kernels compute in place (contiguous NCHW; channels-last
with the kernel pixel-major, what RedNet runs on CPU): time, achieved bandwidth
(minimal bytes: one read of each input, one write of each output) and its
fraction of the copy bandwidth measured in the same run (a 256 MiB tensor copy,
far out of cache, same thread count, timed between the kernels' repeats; the
fraction is the median of per-repeat ratios, so load from other processes
affects both sides alike). Op: forward+backward time (the speedup is the
median of paired ratios) and extra peak memory against the unfold reference.
Every timing interleaves the sides and reverses their order every other repeat
(:func:`mmrednet.utils.interleaved_times`), so that neither always runs first.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List

import torch
from rich.progress import track

from mmrednet.ops import involution, involution_reference
from mmrednet.utils import interleaved_times, peak_memory
from mmrednet.utils.profiling import median

# RedNet-50 stages: (channels of the involution, feature size); K=7, 16 channels a group.
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]
TARGETS = dict(copy_fraction=0.5, op_memory_ratio=0.1, train_ratio=1.0, infer_ratio=1.0)
LAYOUTS = ('channels_last', 'contiguous')
KERNELS = ('forward', 'grad_input', 'grad_weight')
COPY_BYTES = 256 * 2**20
STAGE_GEOMETRY = ([1, 1], [3, 3], [1, 1])  # stride, padding, dilation of the stage involutions


@dataclass
class KernelRow:
    shape: str
    layout: str
    kernel: str
    ms: float
    gbs: float  # minimal bytes / time
    copy_gbs: float  # tensor copy in the same run, read + write
    copy_fraction: float  # median over repeats of (gbs / copy_gbs)


@dataclass
class OpRow:
    shape: str
    ours_ms: float
    reference_ms: float
    speedup: float
    ours_mb: float
    reference_mb: float
    memory_ratio: float


def _stage_tensors(batch: int, channels: int, size: int, layout: str):
    """x, w, grad_out of a stage involution, as a model in ``layout`` has them."""
    x = torch.randn(batch, channels, size, size)
    grad_out = torch.randn_like(x)
    w = torch.randn(batch, size, size, channels // 16, 7, 7).permute(0, 3, 4, 5, 1, 2)
    if layout == 'channels_last':
        cl = torch.channels_last
        return x.contiguous(memory_format=cl), w, grad_out.contiguous(memory_format=cl)
    return x, w.contiguous(), grad_out


def _kernel_calls(x, w, grad_out) -> Dict[str, Callable[[], object]]:
    """The op's three kernels through the dispatch point, as autograd calls them."""
    ops, geometry = torch.ops.mmrednet, STAGE_GEOMETRY
    return dict(forward=lambda: ops.involution(x, w, *geometry),
                grad_input=lambda: ops.involution_grad_input(grad_out, x, w, *geometry),
                grad_weight=lambda: ops.involution_grad_weight(grad_out, x, w, *geometry))


def benchmark_kernels(batch: int, repeat: int) -> List[KernelRow]:
    """Each CPU kernel against the copy bandwidth, timed alternately with a tensor copy."""
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.zeros_like(src)
    rows = []
    for (channels, size), layout in track([(s, lay) for s in STAGES for lay in LAYOUTS],
                                          description='CPU kernels'):
        x, w, grad_out = _stage_tensors(batch, channels, size, layout)
        calls = _kernel_calls(x, w, grad_out)
        minimal = (2 * x.numel() + w.numel()) * x.element_size()  # the same for all three
        calls['copy'] = lambda: dst.copy_(src)
        for fn in calls.values():
            fn()  # warm-up
        times = interleaved_times(calls, repeat)
        copy_gbs = 2 * COPY_BYTES / median(times['copy']) / 1e9
        for name in KERNELS:
            seconds = median(times[name])
            fractions = [minimal * copy / (t * 2 * COPY_BYTES)
                         for copy, t in zip(times['copy'], times[name], strict=True)]
            rows.append(KernelRow(f'{batch}x{channels}x{size}x{size}', layout, name,
                                  seconds * 1e3, minimal / seconds / 1e9, copy_gbs,
                                  median(fractions)))
    return rows


def _fwd_bwd(fn, x, w):
    def step():
        x.grad = w.grad = None
        fn(x, w, 1, 3).sum().backward()
    return step


def benchmark_op(batch: int, device: str, repeat: int) -> List[OpRow]:
    rows = []
    for channels, size in track(STAGES, description='op vs unfold'):
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        w = torch.randn(batch, channels // 16, 7, 7, size, size, device=device,
                        requires_grad=True)
        ours, ref = _fwd_bwd(involution, x, w), _fwd_bwd(involution_reference, x, w)
        ours(), ref()  # warm-up
        times = interleaved_times(dict(ours=ours, ref=ref), repeat, device)
        t_ours, t_ref = median(times['ours']), median(times['ref'])
        speedup = median([r / o for o, r in zip(times['ours'], times['ref'], strict=True)])
        m_ours, m_ref = peak_memory(ours, device), peak_memory(ref, device)
        rows.append(
            OpRow(f'{batch}x{channels}x{size}x{size}', t_ours * 1e3, t_ref * 1e3, speedup,
                  m_ours / 2**20, m_ref / 2**20, m_ours / m_ref))
    return rows
