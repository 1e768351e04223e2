"""First-use self-check of the CUDA kernels: each entry point against the portable path.

The kernels are proven in CI on the host (compiled as CuPy compiles them, run
under sanitizers), never on a GPU; a user's driver, GPU or toolkit may still
miscompile or mislaunch one. So the first time the launcher runs a compiled
entry point (``involution_forward_k7s1_f16``, say) on a device in a process, it
first runs it on a small deterministic probe that plans to that same entry
point, and compares the result with the portable PyTorch path in float64 on
the same device, within the error bound of :mod:`~mmrednet.ops.cuda.bound`
(the bound a correct kernel cannot exceed, which the sweep shares). An entry
point that fails, or whose check cannot run, is not used again in the process
(the backend falls back to the portable path, with one warning that says what
differed); one that passes is trusted from then on. One check at a time:
threads making their first call at once wait for the one verdict.
``MMREDNET_CUDA_SELFCHECK=0`` turns the check off.

Cost, from the traffic model (``mmrednet.benchmarks.traffic.selfcheck_traffic``):
the probe is 2 x 10 channels in 2 groups with a 9 x 5 output, so one kernel run
moves 6.8 kB (K=3, 16-bit) to 102 kB (K=7 stride 2, float64), and the float64
reference about as much again, twice (values and magnitudes): microseconds of
bandwidth on any GPU. What the check costs is latency: two runs of the portable
path (one small launch a tap: 9 to 49 of them), the probe's kernel launch and
one device-to-host copy, about a millisecond per entry point on its first call
(``tools/check_cuda.py`` measures it), once per process.
"""
import os
import threading
import warnings
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .. import portable
from . import bound, launcher
from .planning import PARAMS, LaunchParams, plan

SEED = 20260611
BATCH, GROUPS, GROUP_CHANNELS = 2, 2, 5  # 5 channels a group: chunks of 2 with a remainder
OUTPUT_WIDTH = 5
ANY = (5, 2, 2, 2)  # kernel, stride, dilation, padding of the generic kernels' probe

_verdicts: Dict[Tuple[str, Optional[int]], bool] = {}  # (entry point, device) -> passed
_lock = threading.Lock()  # one check at a time, so each entry point is checked once


class Probe(NamedTuple):
    """The shapes and geometry of a probe, in the launcher's 2-D layout."""
    input_shape: Tuple[int, ...]
    weight_shape: Tuple[int, ...]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]


def enabled() -> bool:
    """Whether entry points check themselves on first use (``MMREDNET_CUDA_SELFCHECK=0``: no)."""
    return os.environ.get('MMREDNET_CUDA_SELFCHECK', '1') != '0'


def op_of(kernel: str) -> str:
    """'forward', 'grad_input' or 'grad_weight': the op of entry point ``kernel``."""
    return kernel[len('involution_'):].rsplit('_', 2)[0]


def probe(kernel: str, params: LaunchParams = PARAMS) -> Probe:
    """The probe of entry point ``kernel`` (``involution_{op}_{variant}_{dtype}``).

    Square: the register-tiled variant ``kKsS`` gets K x K taps at stride S,
    dilation 1 and padding K // 2; the generic one 5 x 5 taps at stride 2 and
    dilation 2. Output rows: two strips of ``params.rows`` and one more row.
    """
    variant = kernel.rsplit('_', 2)[1]
    if variant == 'any':
        k, s, d, p = ANY
    else:
        k, s = map(int, variant[1:].split('s'))
        d, p = 1, k // 2
    out = (2 * params.rows + 1, OUTPUT_WIDTH)
    size = [max(1, (o - 1) * s + d * (k - 1) + 1 - 2 * p) for o in out]
    return Probe((BATCH, GROUPS * GROUP_CHANNELS, *size),
                 (BATCH, GROUPS, k, k, *out), (s, s), (p, p), (d, d))


def _draw(shape, generator: torch.Generator, dtype: torch.dtype, device) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)


def _portable(op: str, x: Tensor, w: Tensor, grad_out: Tensor, geometry) -> Tensor:
    if op == 'forward':
        return portable.forward(x, w, *geometry)
    return getattr(portable, op)(grad_out, x, w, *geometry)


def check(op: str, kernel: str, dtype: torch.dtype, device: torch.device, sm_count: int,
          params: LaunchParams = PARAMS) -> Optional[str]:
    """Run ``kernel`` (an entry point of ``op``) on its probe on ``device``.

    Returns:
        None if every element is within the bound; otherwise what differed.
    """
    shapes = probe(kernel, params)
    launch = plan(op, *shapes, dtype, sm_count, params)
    if launch.kernel != kernel:
        raise AssertionError(f'the probe of {kernel} plans to {launch.kernel}')
    generator = torch.Generator().manual_seed(SEED)
    x = _draw(shapes.input_shape, generator, dtype, device)
    w = _draw(shapes.weight_shape, generator, dtype, device)
    grad_out = _draw((*shapes.input_shape[:2], *shapes.weight_shape[4:]), generator, dtype,
                     device)
    a, b = {'forward': (x, w), 'grad_input': (grad_out, w), 'grad_weight': (grad_out, x)}[op]
    result_shape = {'forward': grad_out.shape, 'grad_input': x.shape,
                    'grad_weight': w.shape}[op]
    got = torch.full(result_shape, float('nan'), dtype=dtype, device=device)
    try:
        launcher.launch(launch, (a.contiguous(), b.contiguous(), got), params=params)
    except Exception as exc:  # a launch the device refuses is a failure, not a crash
        return f'the launch failed ({type(exc).__name__}: {exc})'
    geometry = shapes[2:]
    exact = [t.double() for t in (x, w, grad_out)]
    want = _portable(op, *exact, geometry)
    magnitude = _portable(op, *(t.abs() for t in exact), geometry)
    terms = bound.terms(op, shapes.weight_shape[2:4], GROUP_CHANNELS)
    tolerance = bound.bound(dtype, terms, magnitude)
    error, unwritten = bound.errors(got, want, tolerance)
    worst = int(error.view(-1).argmax())
    ratio, missing = error.view(-1)[worst].item(), int(unwritten.sum())
    if ratio <= 1.0 and not missing:
        return None
    difference = (got.double() - want).abs().view(-1)[worst].item()
    return (f'max error {difference:.3g} where the bound is '
            f'{tolerance.view(-1)[worst].item():.3g} ({ratio:.3g} times the bound), '
            f'{missing} of {got.numel()} elements not written, on the probe input '
            f'{tuple(shapes.input_shape)}, weight {tuple(shapes.weight_shape)}, stride '
            f'{shapes.stride}, padding {shapes.padding}, dilation {shapes.dilation}')


def decided(kernel: str, device: torch.device) -> bool:
    """Whether entry point ``kernel`` needs no check before it runs on ``device``."""
    return not enabled() or (kernel, device.index) in _verdicts


def verdict(kernel: str, device: torch.device) -> Optional[bool]:
    """Whether ``kernel`` passed its check on ``device``; None if it has not been checked."""
    return _verdicts.get((kernel, device.index))


def forget(kernel: str, device: torch.device) -> None:
    """Drop the verdict of ``kernel`` on ``device``: its next call checks it again."""
    _verdicts.pop((kernel, device.index), None)


def verified(op: str, kernel: str, dtype: torch.dtype, device: torch.device,
             sm_count: int) -> bool:
    """Whether entry point ``kernel`` may run on ``device``: checked on its first call.

    Threads arriving at once wait for one check. A check that fails, or that
    raises (the probe's allocation out of memory, say), condemns the entry point
    for the process, with one warning; the caller then takes the portable path.
    The caller keeps first calls out of a CUDA graph capture (the check copies to
    the host, which a capture refuses).
    """
    return verified_by(kernel, device, lambda: check(op, kernel, dtype, device, sm_count))


def verified_by(kernel: str, device: torch.device, run_check: Callable[[], Optional[str]]
                ) -> bool:
    """:func:`verified` with the check given: ``run_check()`` returns None if ``kernel``
    passed on ``device``, else what differed (the fused kernels' own probes use it)."""
    if not enabled():
        return True
    key = (kernel, device.index)
    if key not in _verdicts:
        with _lock:
            if key not in _verdicts:  # another thread may have checked while this one waited
                _verdicts[key] = _judge(kernel, device, run_check)
    return _verdicts[key]


def _judge(kernel: str, device: torch.device, run_check: Callable[[], Optional[str]]) -> bool:
    try:
        problem = run_check()
    except Exception as exc:  # a check that cannot run cannot vouch for the kernel
        what = (f'could not be checked on {device}: its first-use self-check raised '
                f'{type(exc).__name__}: {exc}')
    else:
        if problem is None:
            return True
        what = (f'gave a wrong result on {device} in its first-use self-check against the '
                f'portable path: {problem}')
    warnings.warn(f'mmrednet: the CUDA kernel {kernel} {what}. It is not used: this entry '
                  'point runs the slow portable PyTorch path from now on in this process. '
                  'Please run python tools/check_cuda.py and open an issue with its report.',
                  RuntimeWarning, stacklevel=6)
    return False
