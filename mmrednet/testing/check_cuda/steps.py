"""Running the steps of ``tools/check_cuda.py`` and writing its report.

Exit status of a run (:func:`finish`): 0 every check passed; 1 a check failed,
or what had to be checked was not (no gpu test collected, pytest failing
without a failed test, a gpu test skipped, a sweep of no geometry, no step
that passed). The command line adds 3: no CUDA device.
"""
import argparse
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from rich.progress import track

from mmrednet.ops import cuda
from mmrednet.testing import fused_sweep, report, sweep
from mmrednet.testing.report import Check

from . import bandwidth, environment, first_use, fused, gpu_tests, launch_params

STEPS = ('environment', 'compile', 'selfcheck', 'sweep', 'fused-sweep', 'gpu-tests',
         'compute-sanitizer', 'bandwidth', 'fused-timing', 'launch-params')
QUICK_SKIPS = ('bandwidth', 'fused-timing', 'launch-params')  # what --quick leaves out


def random_sweep(cases: Sequence[sweep.Case], executor: sweep.Executor,
                 dtypes=tuple(sweep.DTYPES.values()), progress: Optional[Callable] = None
                 ) -> Tuple[List[Check], List[sweep.Outcome]]:
    """The sweep of CI (one definition) with ``executor``: one check a dtype."""
    start = time.perf_counter()
    outcomes = sweep.run_sweep(cases, executor, dtypes, progress=progress)
    if not outcomes:
        return [Check('sweep', 'fail', 'no launch: the sweep checked nothing')], outcomes
    return report.sweep_checks('sweep', outcomes, time.perf_counter() - start), outcomes


def run_steps(args: argparse.Namespace, console, script: Path
              ) -> Tuple[List[Check], List[sweep.Outcome], Dict[str, Dict[str, float]]]:
    """The steps ``args`` asks for (``only``, ``skip``, ``quick``, ``cases``, ``seed``,
    ``batch``, ``repeat``), each one's failure reported, not fatal.

    Args:
        console: a rich console for progress.
        script: ``tools/check_cuda.py`` of a source checkout (the compute-sanitizer step
            runs it again; the gpu tests are those of its checkout).

    Returns:
        tuple: the checks, the sweep's outcomes and the report's extra panels.
    """
    steps = [s for s in (args.only or STEPS) if s not in args.skip]
    if args.quick:
        steps = [s for s in steps if s not in QUICK_SKIPS]
    checks: List[Check] = []
    outcomes: List[sweep.Outcome] = []
    panels: Dict[str, Dict[str, float]] = {}
    cases = sweep.random_cases(sweep.CI_CASES if args.quick else args.cases, args.seed)
    for step in steps:
        start = time.perf_counter()
        console.print(f'[bold]{step}[/] ...')
        try:
            if step == 'environment':
                checks.append(environment.environment())
            elif step == 'compile':
                checks.append(environment.compile_kernels())
            elif cuda.unavailable_reason() is not None:
                checks.append(Check(step, 'skip', f'kernels unavailable: '
                                    f'{cuda.unavailable_reason()}'))
            elif step == 'selfcheck':
                checks.append(first_use.selfcheck())
            elif step == 'sweep':
                new, outcomes = random_sweep(
                    cases, sweep.cuda_executor(),
                    progress=lambda items: track(items, description='random sweep'))
                checks += new
            elif step == 'fused-sweep':
                checks += fused.fused_sweep_check(fused_sweep.random_cases(
                    fused_sweep.CI_CASES if args.quick else fused_sweep.FULL_CASES))
            elif step == 'fused-timing':
                checks += fused.fused_timing(args.batch, args.repeat)
            elif step == 'gpu-tests':
                checks += gpu_tests.gpu_tests(Path(script).resolve().parents[1])
            elif step == 'compute-sanitizer':
                checks.append(gpu_tests.compute_sanitizer(script))
            elif step == 'bandwidth':
                new, panels['fraction of copy bandwidth'] = bandwidth.bandwidth(args.batch,
                                                                                args.repeat)
                checks += new
            elif step == 'launch-params':
                new = launch_params.launch_params(launch_params.CANDIDATES, args.batch,
                                                  args.repeat)
                panels['fastest launch params: speedup'] = {
                    c.name.split()[-1]: c.data.get('speedup') or float('nan')
                    for c in new[1:]}
                checks += new
        except Exception as exc:  # one broken step must not lose the others' report
            checks.append(Check(step, 'fail', f'{type(exc).__name__}: {exc}',
                                time.perf_counter() - start,
                                dict(traceback=traceback.format_exc())))
    return checks, outcomes, panels


def finish(console, checks: Sequence[Check], outcomes: Sequence[sweep.Outcome],
           panels: Dict[str, Dict[str, float]], out_dir: Path, **extra) -> int:
    """Print the table, write ``check_cuda.json`` and ``check_cuda.png``; the exit status."""
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
