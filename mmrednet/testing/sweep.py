"""The random sweep of the CUDA kernels against the unfold reference.

One definition, two executors: the seeded geometries, the tolerances and the
comparison live here, and an *executor* runs a launch. The host emulation
(``mmrednet.testing.emulation.Emulator.launch``, under the sanitizers, in the
tests and ``tools/cuda_emulation.py``) and the GPU (:func:`cuda_executor`, in
``tools/check_cuda.py``) are both executors, so the GPU user runs exactly the
sweep that CI runs on the host.

An executor is called as ``executor(launch, a, b, result_shape, threads)`` and
returns the result on the CPU, with NaN wherever no GPU thread wrote.

Tolerances are bounds, not guesses: the elementwise error bound of
:mod:`mmrednet.ops.cuda.bound`, which the launcher's first-use self-check
shares, so the sweep and the self-check judge a kernel alike.
"""
import math
import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from mmrednet.ops import cuda, involution_reference
from mmrednet.ops._args import canonicalize, output_size
from mmrednet.ops.cuda import bound, launcher

OPS = cuda.OPS
DTYPES: Dict[str, torch.dtype] = {'fp64': torch.float64, 'fp32': torch.float32,
                                  'fp16': torch.float16, 'bf16': torch.bfloat16}
SEED = 20250611  # of the full sweep; make test runs its first CI_CASES cases
FULL_CASES = 500
CI_CASES = 40
MAX_MACS = 60_000  # multiply-adds of one op: keeps a case fast under the sanitizers
# Register-tiled kernels exist for vertical (K, stride) in these, dilation 1; uniform
# draws would hit them one time in twenty, so every second case is one, in turn.
TILED_ROWS = ((3, 1), (7, 1), (3, 2), (7, 2))

Executor = Callable[[cuda.Launch, Tensor, Tensor, Sequence[int], int], Tensor]


@dataclass(frozen=True)
class Case:
    """One geometry of the sweep, with the launch it gets.

    Spatial arguments have one entry per axis (1 or 2). ``grid`` is 'plan' (the
    launcher's grid), 'fewer' (``grid_scale`` < 1 of its blocks, so threads loop
    over several work items) or 'more' (more blocks than work items).
    """
    seed: int
    batch: int
    groups: int
    group_channels: int
    size: Tuple[int, ...]
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    sm_count: int = 132  # the plan's channels a thread depends on it
    grid: str = 'plan'
    grid_scale: float = 1.0
    threads: int = cuda.THREADS

    @property
    def channels(self) -> int:
        return self.groups * self.group_channels

    @property
    def output(self) -> Tuple[int, ...]:
        return tuple(output_size(*a) for a in zip(self.size, self.kernel, self.stride,
                                                    self.padding, self.dilation, strict=True))

    def macs(self) -> int:
        return self.batch * self.channels * math.prod(self.output) * math.prod(self.kernel)

    def describe(self) -> str:
        def pair(values):
            return 'x'.join(map(str, values))
        grid = self.grid if self.grid == 'plan' else f'{self.grid}{self.grid_scale:.2f}'
        return (f'n{self.batch} g{self.groups}x{self.group_channels} {pair(self.size)} '
                f'k{pair(self.kernel)} s{pair(self.stride)} p{pair(self.padding)} '
                f'd{pair(self.dilation)} sm{self.sm_count} {grid}/{self.threads}')


@dataclass
class Problem:
    """A case's tensors in one dtype (2-D layout) and the float64 reference."""
    case: Case
    dtype: torch.dtype
    operands: Dict[str, Tuple[Tensor, Tensor]]
    want: Dict[str, Tensor]
    magnitude: Dict[str, Tensor]  # the op on absolute values: sum |a||b| per element
    shapes: Tuple[tuple, tuple, list, list, list]  # input, weight, stride, padding, dilation


@dataclass
class Outcome:
    """One op of one case in one dtype. ``worst`` is ``max |error| / tolerance`` (pass: <= 1)."""
    case: str
    dtype: str
    op: str
    kernel: str
    blocks: int
    threads: int
    worst: float
    unwritten: int  # NaN results: elements no thread wrote (or wrote NaN)
    passed: bool = field(init=False)

    def __post_init__(self):
        self.passed = self.unwritten == 0 and self.worst <= 1.0

    def as_dict(self) -> dict:
        return asdict(self)


def random_case(rng: random.Random, index: int) -> Case:
    """The ``index``-th geometry of a sweep drawn from ``rng`` (see :func:`random_cases`)."""
    one_d = index % 2 == 1 and rng.random() < 0.25
    tiled = None if index % 2 else TILED_ROWS[index // 2 % len(TILED_ROWS)]
    axes = []
    for axis in range(1 if one_d else 2):
        if axis == 0 and tiled:
            k, s, d = tiled[0], tiled[1], 1
        else:
            k, s, d = rng.randint(1, 9), rng.randint(1, 3), rng.randint(1, 3)
        p = rng.randint(0, k)
        smallest = max(1, d * (k - 1) + 1 - 2 * p)  # the least size with an output
        size = smallest + (rng.randint(0, 2) if rng.random() < 0.3 else rng.randint(0, 16))
        axes.append((size, k, s, p, d))
    grid = rng.choice(('plan', 'plan', 'fewer', 'more'))
    scale = {'plan': 1.0, 'fewer': rng.uniform(0.05, 0.6), 'more': rng.uniform(1.2, 3.0)}[grid]
    size, kernel, stride, padding, dilation = (tuple(v) for v in zip(*axes, strict=True))
    return Case(seed=rng.getrandbits(31), batch=rng.randint(1, 3), groups=rng.randint(1, 3),
                group_channels=rng.randint(1, 33), size=size, kernel=kernel, stride=stride,
                padding=padding, dilation=dilation, sm_count=rng.choice((1, 8, 132, 10**6)),
                grid=grid, grid_scale=scale,
                threads=cuda.THREADS if grid == 'plan' else rng.choice((32, 64, 96, 160, 256)))


def random_cases(count: int = FULL_CASES, seed: int = SEED) -> List[Case]:
    """``count`` seeded geometries; a smaller ``count`` gives a prefix of a larger one.

    K 1..9 on both axes, stride 1..3, dilation 1..3, padding 0..K, sizes from the
    least that has an output up to 16 more, 1-D problems, 1..33 channels a group,
    1..3 groups, batch 1..3, grids of the plan, smaller and larger, and four SM
    counts (the plan's channels a thread depends on it). Geometries over
    MAX_MACS multiply-adds are redrawn.
    """
    rng = random.Random(seed)
    cases: List[Case] = []
    while len(cases) < count:
        case = random_case(rng, len(cases))
        if case.macs() <= MAX_MACS:
            cases.append(case)
    return cases


def problem(case: Case, dtype: torch.dtype) -> Problem:
    """Random inputs rounded to ``dtype``, and the float64 reference on those values."""
    generator = torch.Generator().manual_seed(case.seed)
    shape_w = (case.batch, case.groups, *case.kernel, *case.output)

    def draw(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)

    x, w = draw(case.batch, case.channels, *case.size), draw(*shape_w)
    grad_out = draw(case.batch, case.channels, *case.output)
    shapes = _shapes(case)
    x, w = x.reshape(shapes[0]), w.reshape(shapes[1])
    grad_out = grad_out.reshape(x.shape[0], x.shape[1], *w.shape[4:])
    stride, padding, dilation = shapes[2:]

    def reference(x_, w_, go_):
        x_ = x_.double().requires_grad_()
        w_ = w_.double().requires_grad_()
        out = involution_reference(x_, w_, stride, padding, dilation)
        grad_x, grad_w = torch.autograd.grad(out, (x_, w_), go_.double())
        return {'forward': out.detach(), 'grad_input': grad_x, 'grad_weight': grad_w}

    return Problem(case, dtype,
                   operands={'forward': (x, w), 'grad_input': (grad_out, w),
                             'grad_weight': (grad_out, x)},
                   want=reference(x, w, grad_out),
                   magnitude=reference(x.abs(), w.abs(), grad_out.abs()), shapes=shapes)


def launch_for(problem_: Problem, op: str,
               params: cuda.LaunchParams = cuda.PARAMS) -> Tuple[cuda.Launch, int]:
    """The launcher's plan for ``op``, with the case's grid; and the threads a block."""
    case = problem_.case
    launch = cuda.plan(op, *problem_.shapes, problem_.dtype, case.sm_count, params)
    return with_case_grid(case, launch), case.threads


def with_case_grid(case: Case, launch: cuda.Launch) -> cuda.Launch:
    """``launch`` with the case's grid: the plan's, fewer blocks or more."""
    blocks = launch.blocks
    if case.grid == 'fewer':
        blocks = max(1, int(blocks * case.grid_scale))
    elif case.grid == 'more':
        blocks = math.ceil(blocks * case.grid_scale) + 1
    return launch._replace(blocks=blocks)


def result_shape(problem_: Problem, op: str) -> Tuple[int, ...]:
    return tuple(problem_.want[op].shape)


def tolerance(problem_: Problem, op: str) -> Tensor:
    """The elementwise error bound of ``op`` on ``problem_``
    (:func:`mmrednet.ops.cuda.bound.bound`)."""
    case = problem_.case
    return bound.bound(problem_.dtype, bound.terms(op, case.kernel, case.group_channels),
                       problem_.magnitude[op])


def compare(problem_: Problem, op: str, got: Tensor, launch: cuda.Launch,
            threads: int) -> Outcome:
    """``got`` against the reference, in units of the tolerance."""
    error, unwritten = bound.errors(got.cpu(), problem_.want[op], tolerance(problem_, op))
    return Outcome(problem_.case.describe(), _name(problem_.dtype), op, launch.kernel,
                   launch.blocks, threads, error.max().item() if error.numel() else 0.0,
                   int(unwritten.sum()))


def _name(dtype: torch.dtype) -> str:
    return next(name for name, d in DTYPES.items() if d == dtype)


def run_case(case: Case, executor: Executor, dtypes: Iterable[torch.dtype] = DTYPES.values(),
             params: cuda.LaunchParams = cuda.PARAMS) -> List[Outcome]:
    """Every op of ``case`` in every dtype through ``executor``."""
    outcomes = []
    for dtype in dtypes:
        problem_ = problem(case, dtype)
        for op in OPS:
            launch, threads = launch_for(problem_, op, params)
            a, b = problem_.operands[op]
            got = executor(launch, a, b, result_shape(problem_, op), threads)
            outcomes.append(compare(problem_, op, got, launch, threads))
    return outcomes


def run_sweep(cases: Sequence[Case], executor: Executor,
              dtypes: Iterable[torch.dtype] = DTYPES.values(),
              params: cuda.LaunchParams = cuda.PARAMS,
              progress: Optional[Callable[[Iterable], Iterable]] = None) -> List[Outcome]:
    """:func:`run_case` over ``cases``; ``progress`` wraps the iteration (e.g. rich's track)."""
    dtypes = tuple(dtypes)
    outcomes: List[Outcome] = []
    for case in (progress(cases) if progress else cases):
        outcomes.extend(run_case(case, executor, dtypes, params))
    return outcomes


def entry_points(cases: Sequence[Case], params: cuda.LaunchParams = cuda.PARAMS) -> Dict[str, int]:
    """How many launches of each entry point variant (dtype left out) ``cases`` make."""
    counts: Dict[str, int] = {}
    for case in cases:
        for op in OPS:
            name = cuda.plan(op, *_shapes(case), torch.float32, case.sm_count, params).kernel
            variant = name.rsplit('_', 1)[0]
            counts[variant] = counts.get(variant, 0) + 1
    return counts


def _shapes(case: Case) -> tuple:
    x = torch.empty(case.batch, case.channels, *case.size, device='meta')
    w = torch.empty(case.batch, case.groups, *case.kernel, *case.output, device='meta')
    x, w, geo, _ = canonicalize(x, w, case.stride, case.padding, case.dilation)
    return (tuple(x.shape), tuple(w.shape), list(geo.stride), list(geo.padding),
            list(geo.dilation))


def summary(outcomes: Sequence[Outcome]) -> Dict[str, dict]:
    """Per dtype: launches, failures and the worst error / tolerance."""
    table: Dict[str, dict] = {}
    for o in outcomes:
        row = table.setdefault(o.dtype, dict(launches=0, failed=0, worst=0.0))
        row['launches'] += 1
        row['failed'] += not o.passed
        row['worst'] = max(row['worst'], o.worst)
    return table


def cuda_executor(params: cuda.LaunchParams = cuda.PARAMS) -> Executor:
    """The GPU executor: runs the launch with CuPy on the current CUDA device."""
    def run(launch: cuda.Launch, a: Tensor, b: Tensor, shape: Sequence[int],
            threads: int = cuda.THREADS) -> Tensor:
        a, b = a.to('cuda').contiguous(), b.to('cuda').contiguous()
        result = torch.full(tuple(shape), math.nan, dtype=a.dtype, device='cuda')
        launcher.launch(launch, (a, b, result), params=params, threads=threads)
        return result.cpu()
    return run
