"""The checks of ``tools/cuda_emulation.py``: the kernels on the host, as report lines.

Every float through the 16-bit conversions (:func:`conversions`) and the seeded
sweeps of the op's and the fused op's kernels under a sanitizer
(:func:`sanitized_sweep`, :func:`sanitized_fused_sweep`), each as
:class:`~mmrednet.testing.report.Check` lines with the sweep's outcomes.
"""
import time
from typing import List, Sequence, Tuple

from rich.progress import track

from . import emulation, fused_sweep, report, sweep

SANITIZERS = {'asan': 'ASan+UBSan', 'tsan': 'TSan (threaded)'}  # mode -> its name in the report


def conversions() -> report.Check:
    """Every one of the 2^32 floats through the kernels' float -> half and -> bfloat16
    conversions, and every 16-bit pattern back (about a minute)."""
    start = time.perf_counter()
    ok, text = emulation.check_conversions_exhaustively()
    return report.Check('16-bit conversions, all 2^32 floats', 'pass' if ok else 'fail',
                        text.replace('\n', '; '), time.perf_counter() - start)


def sanitized_sweep(mode: str, cases: Sequence[sweep.Case]
                    ) -> Tuple[List[report.Check], List[sweep.Outcome]]:
    """``cases`` in every dtype and op on the host emulation under sanitizer ``mode``."""
    label = SANITIZERS[mode]
    start = time.perf_counter()
    try:
        with emulation.Emulator(mode) as emulator:
            outcomes = sweep.run_sweep(
                cases, emulator.launch,
                progress=lambda items: track(items, description=f'sweep under {label}'))
    except emulation.EmulationError as err:  # a sanitizer report ends the harness
        return [report.Check(f'sweep under {label}', 'fail', str(err).splitlines()[0],
                             time.perf_counter() - start, dict(report=err.report))], []
    seconds = time.perf_counter() - start
    return report.sweep_checks(f'sweep ({len(cases)} geometries) under {label}', outcomes,
                               seconds), outcomes


def sanitized_fused_sweep(mode: str, cases: Sequence[fused_sweep.FusedCase]
                          ) -> Tuple[List[report.Check], List[sweep.Outcome]]:
    """The fused op's ``cases`` in every dtype and entry point on the host emulation
    under sanitizer ``mode``."""
    label = SANITIZERS[mode]
    start = time.perf_counter()
    try:
        with emulation.Emulator(mode, harness=emulation.FUSED_HARNESS) as emulator:
            outcomes = fused_sweep.run_sweep(
                cases, emulator.launch_fused,
                progress=lambda items: track(items, description=f'fused sweep under {label}'))
    except emulation.EmulationError as err:
        return [report.Check(f'fused sweep under {label}', 'fail', str(err).splitlines()[0],
                             time.perf_counter() - start, dict(report=err.report))], []
    return report.sweep_checks(f'fused sweep ({len(cases)} cases) under {label}', outcomes,
                               time.perf_counter() - start), outcomes
