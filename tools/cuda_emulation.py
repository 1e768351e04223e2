"""Everything a machine without a GPU can prove about the CUDA kernels (``make cuda-emulation``).

1. Every one of the 2^32 floats through the host paths of the kernels' float ->
   half and float -> bfloat16 conversions, against the IEEE nearest value and
   torch's own conversions, and every 16-bit pattern back to float
   (``kernels/emulation/conversions_exhaustive.cpp``).
2. The full seeded random sweep (``mmrednet.testing.sweep``: geometries x fp64,
   fp32, fp16, bf16 x forward, grad_input, grad_weight) against the unfold
   reference, under AddressSanitizer + UndefinedBehaviorSanitizer.
3. The same sweep with the GPU threads run concurrently under ThreadSanitizer.
4. The fused op's seeded sweep (``mmrednet.testing.fused_sweep``) under both.

``make test`` runs the first ``sweep.CI_CASES`` geometries of the same sweep;
this runs all of them. Prints a pass/fail table and writes
``cuda_emulation.json`` and ``cuda_emulation.png`` to ``--out-dir``; exits 1 if
anything failed.

Example::

    python tools/cuda_emulation.py --out-dir work_dirs/cuda_emulation
"""
import argparse
import sys
from pathlib import Path
from typing import List

from rich.console import Console

from mmrednet.testing import fused_sweep, report, sweep
from mmrednet.testing.host_checks import (
    SANITIZERS,
    conversions,
    sanitized_fused_sweep,
    sanitized_sweep,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cases', type=int, default=sweep.FULL_CASES,
                        help='geometries of the sweep (the first N of the seeded sequence)')
    parser.add_argument('--seed', type=int, default=sweep.SEED,
                        help='seed of the geometries (another seed: other geometries)')
    parser.add_argument('--fused-cases', type=int, default=fused_sweep.FULL_CASES,
                        help='cases of the fused op\'s sweep (the first N of its sequence)')
    parser.add_argument('--modes', nargs='+', default=['asan', 'tsan'], choices=list(SANITIZERS))
    parser.add_argument('--skip-conversions', action='store_true',
                        help='skip the exhaustive conversion check (about a minute)')
    parser.add_argument('--out-dir', default='work_dirs/cuda_emulation')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console()
    checks: List[report.Check] = []
    if not args.skip_conversions:
        with console.status('every float through the 16-bit conversions'):
            checks.append(conversions())
    cases = sweep.random_cases(args.cases, args.seed)
    outcomes = []
    fused_cases = fused_sweep.random_cases(args.fused_cases)
    for mode in args.modes:
        for run, sweep_cases in ((sanitized_sweep, cases), (sanitized_fused_sweep, fused_cases)):
            mode_checks, mode_outcomes = run(mode, sweep_cases)
            checks += mode_checks
            outcomes += mode_outcomes
    report.print_checks(console, 'CUDA kernels on the host (emulation)', checks)
    out = Path(args.out_dir)
    report.write_json(out / 'cuda_emulation.json', checks, cases=args.cases, seed=args.seed,
                      entry_points=sweep.entry_points(cases))
    report.write_png(out / 'cuda_emulation.png', checks, outcomes)
    console.print(f'wrote {out}/cuda_emulation.json and cuda_emulation.png')
    return report.exit_code(checks)


if __name__ == '__main__':
    sys.exit(main())
