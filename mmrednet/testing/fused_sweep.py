"""The random sweep of the fused op's CUDA kernels against its reference.

The fused counterpart of :mod:`~mmrednet.testing.sweep`, with the same
executors idea: the host emulation (``Emulator.launch_fused`` of an emulator of
``emulation.FUSED_HARNESS``, under the sanitizers) and the GPU
(:func:`cuda_executor`, in ``tools/check_cuda.py``) run the same seeded cases.
The geometries are the op sweep's (:func:`mmrednet.testing.sweep.random_case`:
kernel 1..9, stride, dilation and padding, 1-D problems, odd channel counts,
grids of the plan, smaller and larger; every third one made a square 3 x 3 or
7 x 7 kernel, which have their own forward entry points), each with a number of hidden channels
(1..20: chunks of 8 with remainders) and a bias or none.

The reference is :func:`mmrednet.ops.reference.involution_fused_reference` and
its autograd gradients in float64 on the rounded inputs; the tolerance is the
bound of :func:`mmrednet.ops.cuda.bound.fused_terms`, which the first-use
self-check shares.

An executor is called as ``executor(launch, tensors, result_shape, result_dtype,
threads)`` with ``tensors`` = ``(input, hidden, span, bias, grad_output)`` (None
where the entry point reads nothing), and returns the result on the CPU.
"""
import dataclasses
import math
import random
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import torch
from torch import Tensor

from mmrednet.ops import cuda
from mmrednet.ops.cuda import bound, fused_planning, fused_selfcheck, launcher
from mmrednet.ops.cuda.fused_planning import FusedShapes
from mmrednet.ops.reference import involution_fused_reference

from . import sweep

OPS = fused_planning.OPS
SEED = 20261206
FULL_CASES = 300
CI_CASES = 24
MAX_MACS = 150_000  # multiply-adds of the costliest entry point of a case (sanitizer speed)

FusedExecutor = Callable[[cuda.Launch, Sequence[Optional[Tensor]], Sequence[int], torch.dtype,
                          int], Tensor]


@dataclass(frozen=True)
class FusedCase:
    """A geometry of the op sweep with ``hidden`` channels and a bias or none."""
    case: sweep.Case
    hidden: int
    has_bias: bool

    def shapes(self) -> FusedShapes:
        """The case in the launcher's 2-D layout (a 1-D problem as one row)."""
        c = self.case
        pad = (1, ) * (2 - len(c.size))
        out = (1, ) * (2 - len(c.size)) + c.output
        return FusedShapes((c.batch, c.channels, *pad, *c.size), self.hidden, c.groups, out,
                           pad + c.kernel, pad + c.stride, (0, ) * len(pad) + c.padding,
                           pad + c.dilation, self.has_bias)

    def macs(self) -> int:
        """Multiply-adds of the costliest entry point (they all recompute kernel values)."""
        c = self.case
        taps, pixels = math.prod(c.kernel), c.batch * math.prod(c.output)
        chunks = math.ceil(max(1, self.hidden) / cuda.planning.HIDDEN_CHUNK)
        kernel_values = pixels * c.groups * taps * (self.hidden + 1)
        return max(kernel_values * math.ceil(c.group_channels / 2) + c.macs(),
                   pixels * c.groups * taps * c.group_channels * chunks * 2)

    def describe(self) -> str:
        return f'{self.case.describe()} h{self.hidden}{" bias" if self.has_bias else ""}'


def random_cases(count: int = FULL_CASES, seed: int = SEED) -> List[FusedCase]:
    """``count`` seeded cases; a smaller ``count`` gives a prefix of a larger one."""
    rng = random.Random(seed)
    cases: List[FusedCase] = []
    while len(cases) < count:
        geometry = sweep.random_case(rng, len(cases))
        if len(cases) % 3 == 0 and len(geometry.size) == 2:  # the square-kernel entry points
            kernels = fused_planning.SQUARE_KERNELS
            geometry = _square(geometry, kernels[len(cases) // 3 % len(kernels)])
        case = FusedCase(geometry, rng.randint(1, 20), rng.random() < 0.75)
        if case.macs() <= MAX_MACS:
            cases.append(case)
    return cases


def _square(case: sweep.Case, k: int) -> sweep.Case:
    """``case`` with a ``k`` x ``k`` kernel, its sizes grown where they would have no output."""
    size = tuple(max(s, d * (k - 1) + 1 - 2 * p)
                 for s, d, p in zip(case.size, case.dilation, case.padding, strict=True))
    return dataclasses.replace(case, kernel=(k, k), size=size)


def problem(case: FusedCase, dtype: torch.dtype):
    """Random operands rounded to ``dtype`` (by name) and, per entry point, the float64
    reference (as :func:`fused_selfcheck.composed` shapes it) and tolerance."""
    shapes = case.shapes()
    generator = torch.Generator().manual_seed(case.case.seed)
    t = fused_selfcheck.operands(shapes, dtype, 'cpu', generator)
    exact = {k: None if v is None else v.double().requires_grad_() for k, v in t.items()}
    out = involution_fused_reference(exact['input'], exact['hidden'], exact['span'],
                                     shapes.kernel_size, exact['bias'], shapes.stride,
                                     shapes.padding, shapes.dilation)
    leaves = [exact[k] for k in ('input', 'hidden', 'span', 'bias') if exact[k] is not None]
    grads = dict(zip(('input', 'hidden', 'span', 'bias'),
                     torch.autograd.grad(out, leaves, exact['grad_output'], allow_unused=True),
                     strict=False))
    grad_bias = grads.get('bias')
    if grad_bias is None:  # no bias: its gradient is still what the kernel sums
        grad_bias = fused_selfcheck.composed('grad_span_weight', _detached(exact),
                                             shapes)[:, -1]
    want = {'forward': out.detach(), 'grad_input': grads['input'],
            'grad_hidden': grads['hidden'],
            'grad_span_weight': torch.cat([grads['span'], grad_bias[:, None]], 1)}
    plain = _detached(exact)
    tolerance = {op: fused_selfcheck.tolerance(op, plain, shapes, dtype, case.case.sm_count)
                 for op in OPS}
    return t, want, tolerance


def _detached(t: Dict[str, Optional[Tensor]]) -> Dict[str, Optional[Tensor]]:
    return {k: None if v is None else v.detach() for k, v in t.items()}


def run_case(case: FusedCase, executor: FusedExecutor,
             dtypes: Iterable[torch.dtype] = sweep.DTYPES.values()) -> List[sweep.Outcome]:
    """Every fused entry point of ``case`` in every dtype through ``executor``."""
    shapes, sm_count = case.shapes(), case.case.sm_count
    outcomes = []
    for dtype in dtypes:
        t, want, tolerance = problem(case, dtype)
        for op in OPS:
            launch = sweep.with_case_grid(case.case,
                                          fused_planning.plan(op, shapes, dtype, sm_count))
            tensors = fused_selfcheck.launch_tensors(op, t, None)[:5]
            raw = executor(launch, tensors, fused_planning.result_shape(op, shapes, sm_count),
                           fused_planning.result_dtype(op, dtype), case.case.threads)
            got = fused_selfcheck.result(op, raw, dtype)
            error, unwritten = bound.errors(got, want[op], tolerance[op])
            outcomes.append(sweep.Outcome(
                case.describe(), next(k for k, v in sweep.DTYPES.items() if v == dtype), op,
                launch.kernel, launch.blocks, case.case.threads,
                error.max().item() if error.numel() else 0.0, int(unwritten.sum())))
    return outcomes


def run_sweep(cases: Sequence[FusedCase], executor: FusedExecutor,
              dtypes: Iterable[torch.dtype] = sweep.DTYPES.values(),
              progress: Optional[Callable[[Iterable], Iterable]] = None) -> List[sweep.Outcome]:
    """:func:`run_case` over ``cases``; ``progress`` wraps the iteration."""
    dtypes = tuple(dtypes)
    outcomes: List[sweep.Outcome] = []
    for case in (progress(cases) if progress else cases):
        outcomes.extend(run_case(case, executor, dtypes))
    return outcomes


def cuda_executor() -> FusedExecutor:
    """The GPU executor: runs the launch with CuPy on the current CUDA device."""
    def run(launch: cuda.Launch, tensors: Sequence[Optional[Tensor]], shape: Sequence[int],
            result_dtype: torch.dtype, threads: int = cuda.THREADS) -> Tensor:
        on_gpu = [None if t is None else t.to('cuda').contiguous() for t in tensors]
        result = torch.full(tuple(shape), math.nan, dtype=result_dtype, device='cuda')
        launcher.launch(launch, (*on_gpu, result), source=launcher.FUSED_SOURCE,
                        threads=threads)
        return result.cpu()
    return run
