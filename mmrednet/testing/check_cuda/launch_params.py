"""The ``launch-params`` step: rows x channels x min blocks, each for spills, correctness
(a wrong result fails) and speed on the RedNet-50 stage shapes (the fastest is reported)."""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch
from rich.progress import track

from mmrednet.benchmarks import traffic
from mmrednet.benchmarks.cuda_timing import cuda_ms
from mmrednet.ops import cuda
from mmrednet.ops.cuda import launcher
from mmrednet.testing import sweep
from mmrednet.testing.report import Check

CANDIDATES = tuple(cuda.LaunchParams(rows, channels, min_blocks)
                   for rows in (2, 4) for channels in (4, 8, 16) for min_blocks in (1, 2))


@dataclass
class ParamResult:
    params: cuda.LaunchParams
    spills: bool = False
    correct: Optional[bool] = None  # None: not checked (it spills)
    times_ms: Dict[str, float] = field(default_factory=dict)  # stage shape -> ms


def sweep_launch_params(candidates: Sequence[cuda.LaunchParams], shapes: Sequence[str],
                        spills: Callable[[cuda.LaunchParams], bool],
                        verify: Callable[[cuda.LaunchParams], bool],
                        time_ms: Callable[[cuda.LaunchParams, str], float]) -> List[ParamResult]:
    """Each candidate: spills? (then nothing more), right results? (then timed on ``shapes``)."""
    results = []
    for params in candidates:
        result = ParamResult(params, spills=spills(params))
        if not result.spills:
            result.correct = verify(params)
            if result.correct:
                result.times_ms = {shape: time_ms(params, shape) for shape in shapes}
        results.append(result)
    return results


def fastest(results: Sequence[ParamResult], default: cuda.LaunchParams = cuda.PARAMS
            ) -> Dict[str, dict]:
    """Per shape: the fastest correct, spill-free parameters and their speedup over ``default``."""
    timed = [r for r in results if r.times_ms]
    base = next((r.times_ms for r in timed if r.params == default), {})
    best = {}
    for shape in dict.fromkeys(s for r in timed for s in r.times_ms):
        winner = min((r for r in timed if shape in r.times_ms), key=lambda r: r.times_ms[shape])
        ms = winner.times_ms[shape]
        best[shape] = dict(params=winner.params._asdict(), ms=ms, default_ms=base.get(shape),
                           speedup=base[shape] / ms if shape in base else None)
    return best


def launch_param_checks(results: Sequence[ParamResult],
                        default: cuda.LaunchParams = cuda.PARAMS) -> List[Check]:
    wrong = [r.params for r in results if r.correct is False]
    checks = [Check('launch params', 'fail' if wrong else 'pass',
                    f'{len(results)} candidates: {sum(r.spills for r in results)} spill, '
                    f'{len(wrong)} give wrong results' + (f' ({wrong})' if wrong else ''),
                    data=dict(results=[dict(params=r.params._asdict(), spills=r.spills,
                                            correct=r.correct, times_ms=r.times_ms)
                                       for r in results]))]
    for shape, best in fastest(results, default).items():
        speedup = best['speedup']
        checks.append(Check(f'launch params {shape}', 'info',
                            f'fastest {best["params"]}: {best["ms"]:.3f} ms' +
                            (f', {speedup:.2f}x the default {default._asdict()}'
                             if speedup else ''), data=best))
    return checks


def _stage_step(shape: str, dtype: torch.dtype, params: cuda.LaunchParams) -> Callable[[], None]:
    """Forward, grad_input and grad_weight of a stage shape with ``params``, as the launcher runs
    them."""
    n, c, h, w = map(int, shape.split('x'))
    x = torch.randn(n, c, h, w, device='cuda', dtype=dtype)
    wk = torch.randn(n, c // 16, 7, 7, h, w, device='cuda', dtype=dtype)
    shapes = (x.shape, wk.shape, [1, 1], [3, 3], [1, 1])
    sm_count = torch.cuda.get_device_properties(x.device).multi_processor_count
    outs = {op: torch.empty(s, device='cuda', dtype=dtype)
            for op, s in (('forward', x.shape), ('grad_input', x.shape),
                          ('grad_weight', wk.shape))}
    operands = {'forward': (x, wk), 'grad_input': (outs['forward'], wk),
                'grad_weight': (outs['forward'], x)}
    launches = {op: cuda.plan(op, *shapes, dtype, sm_count, params) for op in cuda.OPS}

    def step():
        for op in cuda.OPS:
            launcher.launch(launches[op], (*operands[op], outs[op]), params=params)
    return step


def launch_params(candidates: Sequence[cuda.LaunchParams], batch: int, repeat: int,
                  dtype: torch.dtype = torch.float16) -> List[Check]:
    device = torch.device('cuda', torch.cuda.current_device())
    shapes = [f'{batch}x{c}x{s}x{s}' for c, s in traffic.REDNET50_STAGES]
    verify_cases = sweep.random_cases(12)

    def spills(params):
        return any(launcher.load(name, d, device, params=params).local_size_bytes
                   for d in (dtype, torch.float32) for name in cuda.entry_points(d))

    def verify(params):
        outcomes = sweep.run_sweep(verify_cases, sweep.cuda_executor(params),
                                   (dtype, torch.float32), params)
        return all(o.passed for o in outcomes)

    def time_ms(params, shape):
        return cuda_ms(_stage_step(shape, dtype, params), repeat)

    results = sweep_launch_params(track(candidates, description='launch parameters'), shapes,
                                  spills, verify, time_ms)
    return launch_param_checks(results)
