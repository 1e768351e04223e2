"""Self-check of mmrednet's CUDA kernels on this machine's GPU: run it once, before training.

The kernels are proven on the CPU in CI (compiled as the launcher compiles them,
run on the host under sanitizers in every dtype); what only a GPU can show is
checked here. Each step is a line of the report:

* environment: the device, torch, CuPy and NVRTC versions (info).
* compile: every entry point of ``kernels/involution_cuda.cu`` (every dtype)
  and of the baseline, compiled by CuPy for this device; registers, resident
  blocks an SM, and no local memory (spills).
* selfcheck: the launcher's first-use self-check (``mmrednet.ops.cuda_selfcheck``)
  of the entry points a RedNet stage uses, in every dtype: each must pass, and
  the time of its first call (check and launch) against a later call, beside
  the probe's bytes from the traffic model.
* sweep <dtype>: the seeded random sweep of CI (``mmrednet.testing.sweep``) on
  the GPU: fp64, fp32, fp16, bf16, forward and both gradients against the
  float64 unfold reference, within the error bound.
* gpu test <name>: the repository's ``gpu`` tests (``pytest -m gpu``): float64
  gradcheck, ``torch.library.opcheck``, ``torch.compile`` without graph
  breaks, autocast, streams, the layer's memory saving, > 2^31 elements...
* compute-sanitizer: memcheck of a part of the sweep, when ``compute-sanitizer``
  is on PATH (this script runs itself under it).
* bandwidth: forward and backward on the RedNet-50 stage shapes against the
  device-to-device copy, the unfold reference and the one-thread-per-output
  baseline, beside the traffic model's floor (info: speed is reported, not
  judged).
* launch params: rows x channels x min blocks: spills, correctness (a wrong
  result fails), and the fastest per stage shape (info).

Writes ``check_cuda.json`` (every figure and every failure) and
``check_cuda.png`` to ``--out-dir``.

Exit status: 0 every check passed; 1 a check failed, or what had to be checked
was not (no gpu test collected, pytest failing without a failed test, a gpu
test skipped, e.g. for lack of memory, a sweep of no geometry, no step that
passed); 3 no CUDA device (nothing was checked; ``make test`` and ``make
cuda-emulation`` are the CPU checks).
If a check fails, open an issue with ``check_cuda.json`` and the console output.

Example::

    python tools/check_cuda.py --out-dir work_dirs/check_cuda
"""
import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from rich.console import Console
from rich.progress import track

from mmrednet.ops import cuda, cuda_traffic
from mmrednet.testing import nvrtc, report, sweep

ROOT = Path(__file__).resolve().parents[1]
EXIT_NO_GPU = 3
STEPS = ('environment', 'compile', 'selfcheck', 'sweep', 'gpu-tests', 'compute-sanitizer',
         'bandwidth', 'launch-params')
GPU_TESTS = ('tests/test_cuda.py', 'tests/test_memory.py')
PARAM_CANDIDATES = tuple(cuda.LaunchParams(rows, channels, min_blocks)
                         for rows in (2, 4) for channels in (4, 8, 16) for min_blocks in (1, 2))
SANITIZER_CASES = 12
Check = report.Check


# ---------------------------------------------------------------------------
# environment and compilation
# ---------------------------------------------------------------------------
def environment() -> Check:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    info = dict(device=props.name, capability=f'{props.major}.{props.minor}',
                sms=props.multi_processor_count, memory_gb=round(props.total_memory / 2**30, 1),
                torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                cupy=getattr(cuda.cupy, '__version__', None))
    try:
        info['nvrtc'] = '.'.join(map(str, nvrtc.version()))
    except (ImportError, RuntimeError):
        info['nvrtc'] = None
    return Check('environment', 'info', ', '.join(f'{k} {v}' for k, v in info.items()), data=info)


def _limits() -> Tuple[int, int, int]:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    arch = f'{props.major}{props.minor}'
    # Blocks an SM: 32 from sm_80 on (16 on sm_75, sm_86's 16 and sm_89's 24 are close enough
    # that registers decide first at the kernels' sizes).
    return nvrtc.SM_LIMITS.get(arch, (props.regs_per_multiprocessor,
                                      props.max_threads_per_multi_processor, 32))


def compile_kernels(params: cuda.LaunchParams = cuda.PARAMS) -> Check:
    """Every entry point through the launcher's own ``cuda.load`` (CuPy, NVRTC)."""
    reason = cuda.unavailable_reason()
    if reason is not None:
        return Check('compile', 'fail', f'the CUDA kernels cannot run: {reason}')
    device = torch.device('cuda', torch.cuda.current_device())
    registers, problems = {}, []
    for dtype in sweep.DTYPES.values():
        for source, baseline in ((cuda.SOURCE, False), (cuda.BASELINE_SOURCE, True)):
            for name in cuda.entry_points(dtype, baseline):
                try:
                    function = cuda.load(name, dtype, device, source, params)
                except Exception as exc:  # report every entry point, not the first failure
                    problems.append(f'{name}: {type(exc).__name__}: {exc}')
                    continue
                registers[name] = function.num_regs
                if function.local_size_bytes:
                    problems.append(f'{name}: {function.local_size_bytes} B local memory '
                                    '(spills)')
    limits = _limits()
    blocks = {name: nvrtc.occupancy(r, limits=limits) for name, r in registers.items()}
    detail = (f'{len(registers)} entry points, {min(registers.values(), default=0)}-'
              f'{max(registers.values(), default=0)} registers, '
              f'{min(blocks.values(), default=0)}-{max(blocks.values(), default=0)} blocks of '
              f'{cuda.THREADS} threads an SM')
    if problems:
        detail = f'{len(problems)} problems, first: {problems[0]}; ' + detail
    return Check('compile', 'fail' if problems else 'pass', detail,
                 data=dict(registers=registers, blocks_per_sm=blocks, problems=problems))


# ---------------------------------------------------------------------------
# the launcher's first-use self-check: passes, and what it costs
# ---------------------------------------------------------------------------
SELFCHECK_GEOMETRIES = ((7, 1), (7, 2))  # RedNet's involutions: (kernel, stride)


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
    if not cuda.selfcheck_enabled():
        return Check('selfcheck', 'skip', 'MMREDNET_CUDA_SELFCHECK=0: the check is off')
    device = device or torch.device('cuda', torch.cuda.current_device())
    sm_count = cuda._sm_count(device)
    rows, failed = {}, []
    for dtype in sweep.DTYPES.values():
        for kernel, stride in SELFCHECK_GEOMETRIES:
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
                cuda.load(name, dtype, device)  # compiled before: the first call is the check
                cuda._verdicts.pop((name, device.index), None)
                first, later = _first_and_later_ms(call, synchronize)
                if not cuda._verdicts.get((name, device.index)):
                    failed.append(name)
                rows[name] = dict(first_ms=first, later_ms=later,
                                  probe_bytes=cuda_traffic.selfcheck_traffic(name,
                                                                             sm_count).minimal)
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


# ---------------------------------------------------------------------------
# the sweep (shared with CI: one definition, the GPU as executor)
# ---------------------------------------------------------------------------
def random_sweep(cases: Sequence[sweep.Case], executor: sweep.Executor,
                 dtypes=tuple(sweep.DTYPES.values()), progress: Optional[Callable] = None
                 ) -> Tuple[List[Check], List[sweep.Outcome]]:
    start = time.perf_counter()
    outcomes = sweep.run_sweep(cases, executor, dtypes, progress=progress)
    if not outcomes:
        return [Check('sweep', 'fail', 'no launch: the sweep checked nothing')], outcomes
    return report.sweep_checks('sweep', outcomes, time.perf_counter() - start), outcomes


# ---------------------------------------------------------------------------
# the repository's gpu tests
# ---------------------------------------------------------------------------
def parse_junit(path: Path) -> List[Check]:
    """One check per test case of a pytest ``--junitxml`` file; a skipped test fails (what
    it checks was not checked, e.g. for lack of GPU memory)."""
    checks = []
    for case in ET.parse(path).getroot().iter('testcase'):
        name = case.get('name')
        failure = case.find('failure')
        if failure is None:
            failure = case.find('error')
        skipped = case.find('skipped')
        if failure is not None:
            status, detail = 'fail', (failure.get('message') or '').splitlines()[0][:200]
        elif skipped is not None:
            status = 'fail'
            detail = f'skipped, so not checked: {skipped.get("message") or ""}'[:200]
        else:
            status, detail = 'pass', ''
        checks.append(Check(f'gpu test {name}', status, detail, float(case.get('time', 0)),
                            dict(text=failure.text if failure is not None else '')))
    return checks


def gpu_tests(root: Path = ROOT, files: Sequence[str] = GPU_TESTS) -> List[Check]:
    if not all((root / f).is_file() for f in files):
        return [Check('gpu tests', 'skip', f'{", ".join(files)} not found: run from a source '
                      'checkout')]
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / 'gpu.xml'
        command = [sys.executable, '-m', 'pytest', '-q', '-m', 'gpu', '-p', 'no:cacheprovider',
                   f'--junitxml={junit}', *files]
        result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
        if not junit.is_file():
            return [Check('gpu tests', 'fail', f'pytest did not run: {result.stderr[-300:]}')]
        checks = parse_junit(junit)
    return checks + gpu_test_gaps(checks, result.returncode, result.stdout + result.stderr)


def gpu_test_gaps(checks: Sequence[Check], returncode: int, output: str) -> List[Check]:
    """A failing check where pytest's run is not a pass though no test failed: no test
    collected, or a non-zero exit status (an error outside the tests, an interruption)."""
    tail = output.strip()[-300:]
    if not checks:
        return [Check('gpu tests', 'fail', f'no gpu test was collected (pytest exit status '
                      f'{returncode}): nothing was checked. {tail}')]
    if returncode != 0 and not any(c.status == 'fail' for c in checks):
        return [Check('gpu tests', 'fail', f'pytest exit status {returncode} though no test '
                      f'failed: {tail}')]
    return []


# ---------------------------------------------------------------------------
# compute-sanitizer: this script's sweep step under memcheck
# ---------------------------------------------------------------------------
def compute_sanitizer(cases: int = SANITIZER_CASES) -> Check:
    executable = shutil.which('compute-sanitizer')
    if executable is None:
        return Check('compute-sanitizer', 'skip', 'compute-sanitizer is not on PATH (it comes '
                     'with the CUDA toolkit)')
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        command = [executable, '--tool', 'memcheck', '--error-exitcode', '86',
                   sys.executable, str(Path(__file__).resolve()), '--only', 'sweep',
                   '--cases', str(cases), '--out-dir', tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    tail = output.splitlines()[-1] if output else ''
    status = 'pass' if result.returncode == 0 else 'fail'
    return Check('compute-sanitizer memcheck', status,
                 f'{cases} geometries, every dtype and op: exit status {result.returncode}; {tail}',
                 time.perf_counter() - start, dict(command=command, output=output[-20000:]))


# ---------------------------------------------------------------------------
# bandwidth: the benchmark's CUDA section and the traffic model
# ---------------------------------------------------------------------------
def bandwidth(batch: int, repeat: int) -> Tuple[List[Check], Dict[str, float]]:
    sys.path.insert(0, str(ROOT / 'tools'))
    import benchmark_involution as bench

    copy = bench.copy_bandwidth(repeat)
    rows = bench.benchmark_cuda_op(batch, repeat, copy)
    sm_count = torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count
    floors = {}  # (shape, dtype, direction) -> ms at the measured copy bandwidth
    for name, dtype in bench.CUDA_DTYPES.items():
        for stage in cuda_traffic.rednet50_stages(batch, dtype, sm_count, bandwidths={}):
            direction = 'forward' if stage.op == 'forward' else 'backward'
            key = (stage.shape, name, direction)
            floors[key] = floors.get(key, 0.0) + stage.minimal_mb * 1e6 / copy * 1e3
    checks, fractions = [], {}
    for r in rows:
        floor = floors[(r.shape, r.dtype, r.direction)]
        fractions[f'{r.shape.split("x", 1)[1]} {r.dtype} {r.direction[:3]}'] = r.copy_fraction
        checks.append(Check(
            f'bandwidth {r.shape} {r.dtype} {r.direction}', 'info',
            f'{r.ours_ms:.3f} ms (floor {floor:.3f} ms at the copy bandwidth), '
            f'{r.copy_fraction:.0%} of copy, {r.vs_baseline:.1f}x vs one thread an output, '
            f'{r.vs_reference:.1f}x vs unfold', data=dict(floor_ms=floor, **r.__dict__)))
    checks.insert(0, Check('bandwidth copy', 'info',
                           f'device-to-device copy {copy / 1e9:.0f} GB/s', data=dict(copy=copy)))
    return checks, fractions


# ---------------------------------------------------------------------------
# launch parameters
# ---------------------------------------------------------------------------
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
            cuda._launch(launches[op], (*operands[op], outs[op]), params=params)
    return step


def launch_params(candidates: Sequence[cuda.LaunchParams], batch: int, repeat: int,
                  dtype: torch.dtype = torch.float16) -> List[Check]:
    sys.path.insert(0, str(ROOT / 'tools'))
    import benchmark_involution as bench

    device = torch.device('cuda', torch.cuda.current_device())
    shapes = [f'{batch}x{c}x{s}x{s}' for c, s in cuda_traffic.REDNET50_STAGES]
    verify_cases = sweep.random_cases(12)

    def spills(params):
        return any(cuda.load(name, d, device, params=params).local_size_bytes
                   for d in (dtype, torch.float32) for name in cuda.entry_points(d))

    def verify(params):
        outcomes = sweep.run_sweep(verify_cases, sweep.cuda_executor(params),
                                   (dtype, torch.float32), params)
        return all(o.passed for o in outcomes)

    def time_ms(params, shape):
        return bench._cuda_ms(_stage_step(shape, dtype, params), repeat)

    results = sweep_launch_params(track(candidates, description='launch parameters'), shapes,
                                  spills, verify, time_ms)
    return launch_param_checks(results)


# ---------------------------------------------------------------------------
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}: a sweep of no '
                                         'geometry checks nothing')
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='work_dirs/check_cuda')
    parser.add_argument('--cases', type=_positive, default=sweep.FULL_CASES,
                        help='geometries of the random sweep (CI runs the same seeded ones)')
    parser.add_argument('--seed', type=int, default=sweep.SEED)
    parser.add_argument('--batch', type=int, default=32, help='batch of the stage shapes')
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--only', nargs='+', choices=STEPS, help='run only these steps')
    parser.add_argument('--skip', nargs='+', choices=STEPS, default=[], help='skip these steps')
    parser.add_argument('--quick', action='store_true',
                        help=f'{sweep.CI_CASES} geometries, no benchmark, no launch parameters')
    return parser.parse_args(argv)


def run_steps(args: argparse.Namespace, console: Console
              ) -> Tuple[List[Check], List[sweep.Outcome], Dict[str, Dict[str, float]]]:
    steps = [s for s in (args.only or STEPS) if s not in args.skip]
    if args.quick:
        steps = [s for s in steps if s not in ('bandwidth', 'launch-params')]
    checks: List[Check] = []
    outcomes: List[sweep.Outcome] = []
    panels: Dict[str, Dict[str, float]] = {}
    cases = sweep.random_cases(sweep.CI_CASES if args.quick else args.cases, args.seed)
    for step in steps:
        start = time.perf_counter()
        console.print(f'[bold]{step}[/] ...')
        try:
            if step == 'environment':
                checks.append(environment())
            elif step == 'compile':
                checks.append(compile_kernels())
            elif step == 'selfcheck' and cuda.unavailable_reason() is None:
                checks.append(selfcheck())
            elif cuda.unavailable_reason() is not None:
                checks.append(Check(step, 'skip', f'kernels unavailable: '
                                    f'{cuda.unavailable_reason()}'))
            elif step == 'sweep':
                new, outcomes = random_sweep(
                    cases, sweep.cuda_executor(),
                    progress=lambda items: track(items, description='random sweep'))
                checks += new
            elif step == 'gpu-tests':
                checks += gpu_tests()
            elif step == 'compute-sanitizer':
                checks.append(compute_sanitizer())
            elif step == 'bandwidth':
                new, panels['fraction of copy bandwidth'] = bandwidth(args.batch, args.repeat)
                checks += new
            elif step == 'launch-params':
                new = launch_params(PARAM_CANDIDATES, args.batch, args.repeat)
                panels['fastest launch params: speedup'] = {
                    c.name.split()[-1]: c.data.get('speedup') or float('nan')
                    for c in new[1:]}
                checks += new
        except Exception as exc:  # one broken step must not lose the others' report
            checks.append(Check(step, 'fail', f'{type(exc).__name__}: {exc}',
                                time.perf_counter() - start,
                                dict(traceback=traceback.format_exc())))
    return checks, outcomes, panels


def finish(console: Console, checks: Sequence[Check], outcomes: Sequence[sweep.Outcome],
           panels: Dict[str, Dict[str, float]], out_dir: Path, **extra) -> int:
    """Print the table, write the JSON and the PNG; the exit status."""
    if not any(c.status == 'pass' for c in checks):
        checks = [*checks, Check('checked', 'fail', 'no check passed: every step was skipped '
                                 'or only reported, so nothing was checked')]
    report.print_checks(console, 'mmrednet CUDA self-check', checks)
    report.write_json(out_dir / 'check_cuda.json', checks, **extra)
    report.write_png(out_dir / 'check_cuda.png', checks, outcomes, panels)
    code = report.exit_code(checks)
    console.print(f'wrote {out_dir}/check_cuda.json and check_cuda.png')
    if code:
        console.print('[bold red]A check failed or did not run.[/] If it failed, please open '
                      'an issue with check_cuda.json and this output.')
    else:
        console.print('[bold green]All checks passed.[/]')
    return code


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console()
    if not torch.cuda.is_available():
        console.print('[bold yellow]No CUDA device[/]: nothing to check. tools/check_cuda.py '
                      'checks the CUDA kernels on a GPU; on this machine `make test` and '
                      f'`make cuda-emulation` are the checks. Exit status {EXIT_NO_GPU}.')
        return EXIT_NO_GPU
    checks, outcomes, panels = run_steps(args, console)
    return finish(console, checks, outcomes, panels, Path(args.out_dir), cases=args.cases,
                  seed=args.seed)


if __name__ == '__main__':
    sys.exit(main())
