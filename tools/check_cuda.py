"""Self-check of mmrednet's CUDA kernels on this machine's GPU: run it once, before training.

The kernels are proven on the CPU in CI (compiled as the launcher compiles them,
run on the host under sanitizers in every dtype); what only a GPU can show is
checked here. Each step is a line of the report:

* environment: the device, torch, CuPy and NVRTC versions (info).
* compile: every entry point of ``kernels/involution_cuda.cu`` (every dtype)
  and of the baseline, compiled by CuPy for this device; registers, resident
  blocks an SM, and no local memory (spills).
* selfcheck: the launcher's first-use self-check (``mmrednet.ops.cuda.selfcheck``)
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

The steps are ``mmrednet.testing.check_cuda``. Writes ``check_cuda.json``
(every figure and every failure) and ``check_cuda.png`` to ``--out-dir``.

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
import sys
from pathlib import Path

import torch
from rich.console import Console

from mmrednet.testing import sweep
from mmrednet.testing.check_cuda.steps import QUICK_SKIPS, STEPS, finish, run_steps

EXIT_NO_GPU = 3


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
                        help=f'{sweep.CI_CASES} geometries, no benchmark, no launch parameters '
                        f'(skips {", ".join(QUICK_SKIPS)})')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    console = Console()
    if not torch.cuda.is_available():
        console.print('[bold yellow]No CUDA device[/]: nothing to check. tools/check_cuda.py '
                      'checks the CUDA kernels on a GPU; on this machine `make test` and '
                      f'`make cuda-emulation` are the checks. Exit status {EXIT_NO_GPU}.')
        return EXIT_NO_GPU
    checks, outcomes, panels = run_steps(args, console, Path(__file__).resolve())
    return finish(console, checks, outcomes, panels, Path(args.out_dir), cases=args.cases,
                  seed=args.seed)


if __name__ == '__main__':
    sys.exit(main())
