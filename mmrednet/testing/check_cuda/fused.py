"""The ``fused-sweep`` and ``fused-timing`` steps: the fused op's kernels on the user's GPU.

``fused-sweep`` runs CI's fused random sweep (:mod:`mmrednet.testing.fused_sweep`)
with the GPU as executor. ``fused-timing`` times the fused kernels against the
composition (cuDNN span convolution + the involution op's kernels) on the
RedNet-50 involution shapes, forward and backward, paired and interleaved
(rounds alternate which runs first), as the median of the per-round ratios:
reported, not judged (speed depends on the GPU; this is where it is measured).
"""
import time
from typing import Callable, List, Sequence, Tuple

import torch

from mmrednet.ops import portable
from mmrednet.ops.cuda import fused_backend
from mmrednet.testing import fused_sweep, report, sweep
from mmrednet.testing.report import Check

# RedNet-50's involutions: (channels, input side, stride); 16 channels a group, C/4 hidden.
SHAPES = ((64, 56, 1), (128, 56, 2), (128, 28, 1), (256, 28, 2), (256, 14, 1), (512, 14, 2),
          (512, 7, 1))


def fused_sweep_check(cases: Sequence[fused_sweep.FusedCase]) -> List[Check]:
    """CI's fused sweep on this GPU: one check a dtype."""
    start = time.perf_counter()
    outcomes = fused_sweep.run_sweep(cases, fused_sweep.cuda_executor())
    if not outcomes:
        return [Check('fused sweep', 'fail', 'no launch: the sweep checked nothing')]
    return report.sweep_checks('fused sweep', outcomes, time.perf_counter() - start)


def _event_ms(fn: Callable[[], object]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def paired_ratio(fused: Callable[[], object], composed: Callable[[], object],
                 repeat: int) -> Tuple[float, float, float]:
    """Median fused ms, median composed ms and the median of the per-round ratios
    fused / composed, rounds interleaved, the order alternating."""
    fused(), composed()  # warm-up: compiles, self-checks, cuDNN's choice
    torch.cuda.synchronize()
    pairs = []
    for round_ in range(max(3, repeat)):
        if round_ % 2:
            b = _event_ms(composed)
            a = _event_ms(fused)
        else:
            a = _event_ms(fused)
            b = _event_ms(composed)
        pairs.append((a, b))

    def median(values):
        return sorted(values)[len(values) // 2]

    return (median([a for a, _ in pairs]), median([b for _, b in pairs]),
            median([a / b for a, b in pairs]))


def _directions(x, h, w, b, go, geometry) -> dict:
    """direction -> (fused call, composed call) on these tensors."""
    return {
        'forward': (lambda: fused_backend.forward(x, h, w, b, *geometry),
                    lambda: portable.fused_forward(x, h, w, b, *geometry)),
        'backward': (lambda: (fused_backend.grad_input(go, x, h, w, b, *geometry),
                              fused_backend.grad_span(go, x, h, w, *geometry)),
                     lambda: (portable.fused_grad_input(go, x, h, w, b, *geometry),
                              portable.fused_grad_span(go, x, h, w, *geometry)))}


def fused_timing(batch: int, repeat: int, dtypes=('fp32', 'fp16')) -> List[Check]:
    """Fused against composed per RedNet-50 involution shape, forward and backward."""
    checks = []
    for name in dtypes:
        dtype = sweep.DTYPES[name]
        for channels, side, stride in SHAPES:
            out = (side + 2 * 3 - 7) // stride + 1
            groups, hidden = channels // 16, channels // 4
            shapes = ((batch, channels, side, side), (batch, hidden, out, out),
                      (groups * 49, hidden), (groups * 49, ), (batch, channels, out, out))
            tensors = [torch.randn(s, device='cuda', dtype=dtype) for s in shapes]
            geometry = ([7, 7], [stride, stride], [3, 3], [1, 1])
            shape = f'{batch}x{channels}x{side}x{side} s{stride}'
            for direction, (fused, composed) in _directions(*tensors, geometry).items():
                fused_ms, composed_ms, ratio = paired_ratio(fused, composed, repeat)
                checks.append(Check(
                    f'fused vs composed {shape} {name} {direction}', 'info',
                    f'fused {fused_ms:.3f} ms, composed {composed_ms:.3f} ms: '
                    f'{ratio:.2f}x the composition\'s time (median of paired rounds)',
                    data=dict(fused_ms=fused_ms, composed_ms=composed_ms, ratio=ratio)))
    return checks
