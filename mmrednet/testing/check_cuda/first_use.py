"""The ``selfcheck`` step: the launcher's first-use self-check passes, and what it costs."""
import time
from functools import partial
from typing import Callable, Optional, Tuple

import torch

from mmrednet.benchmarks import traffic
from mmrednet.ops import cuda
from mmrednet.ops.cuda import launcher
from mmrednet.ops.cuda import selfcheck as first_use_check
from mmrednet.testing import sweep
from mmrednet.testing.report import Check

GEOMETRIES = ((7, 1), (7, 2))  # RedNet's involutions: (kernel, stride)


def _first_and_later_ms(call: Callable[[], object], synchronize: Callable[[], None]
                        ) -> Tuple[float, float]:
    times = []
    for _ in range(2):
        synchronize()
        start = time.perf_counter()
        call()
        synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return times[0], times[1]


def selfcheck(batch: int = 8, channels: int = 64, size: int = 28,
              device: Optional[torch.device] = None,
              synchronize: Callable[[], None] = torch.cuda.synchronize) -> Check:
    """Each op of a RedNet stage shape (K=7, stride 1 and 2) in every dtype, through the
    launcher with its self-check forgotten: the check must pass; its first call is timed
    against the next (the check's cost) beside the probe's modelled bytes."""
    if not first_use_check.enabled():
        return Check('selfcheck', 'skip', 'MMREDNET_CUDA_SELFCHECK=0: the check is off')
    device = device or torch.device('cuda', torch.cuda.current_device())
    sm_count = launcher.sm_count(device)
    rows, failed = {}, []
    for dtype in sweep.DTYPES.values():
        for kernel, stride in GEOMETRIES:
            out = (size + 2 * 3 - kernel) // stride + 1
            x = torch.randn(batch, channels, size, size, device=device, dtype=dtype)
            w = torch.randn(batch, channels // 16, kernel, kernel, out, out, device=device,
                            dtype=dtype)
            grad_out = torch.randn(batch, channels, out, out, device=device, dtype=dtype)
            geometry = ([stride, stride], [3, 3], [1, 1])
            calls = {'forward': partial(cuda.forward, x, w, *geometry),
                     'grad_input': partial(cuda.grad_input, grad_out, x, w, *geometry),
                     'grad_weight': partial(cuda.grad_weight, grad_out, x, w, *geometry)}
            for op, call in calls.items():
                name = cuda.plan(op, x.shape, w.shape, *geometry, dtype, sm_count).kernel
                launcher.load(name, dtype, device)  # compiled before: the first call is the check
                first_use_check.forget(name, device)
                first, later = _first_and_later_ms(call, synchronize)
                if not first_use_check.verdict(name, device):
                    failed.append(name)
                rows[name] = dict(first_ms=first, later_ms=later,
                                  probe_bytes=traffic.selfcheck_traffic(name, sm_count).minimal)
    extra = sorted(r['first_ms'] - r['later_ms'] for r in rows.values())
    probe = [r['probe_bytes'] for r in rows.values()]
    detail = (f'{len(rows)} entry points, {len(failed)} failed; first call +'
              f'{extra[len(extra) // 2]:.2f} ms median (max {extra[-1]:.2f} ms) over a later '
              f'call on {batch}x{channels}x{size}x{size}; probes of {min(probe) / 1e3:.0f}-'
              f'{max(probe) / 1e3:.0f} kB (traffic model)')
    if failed:
        detail = f'wrong results, now on the portable path: {", ".join(failed)}; ' + detail
    return Check('selfcheck', 'fail' if failed else 'pass', detail,
                 data=dict(entry_points=rows, failed=failed))
