"""tools/check_cuda.py (``mmrednet.testing.check_cuda``) on the CPU: everything it does that
needs no GPU.

Its exit codes (no GPU, a failure, all passed), its report (table, JSON, PNG),
its sweep against the emulated kernels (the GPU's stand-in as executor), the
pytest and compute-sanitizer plumbing, and the launch-parameter sweep's
bookkeeping with the emulation as the judge of correctness.
"""
import argparse
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from rich.console import Console

from mmrednet.ops import cuda
from mmrednet.ops.cuda import launcher
from mmrednet.testing import emulation, report, sweep
from mmrednet.testing.check_cuda import environment, first_use, gpu_tests, launch_params, steps

from .det_helpers import ROOT

CASES = sweep.random_cases(6)
TOOL = Path(ROOT) / 'tools' / 'check_cuda.py'
EXIT_NO_GPU = 3  # the tool's exit status without a CUDA device


def _tool(*args, **env):
    """tools/check_cuda.py in a process of its own, with ``env`` added to the environment."""
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          check=False, env={**os.environ, 'PYTHONPATH': ROOT, **env})


def _args(*only):
    """What the tool's parser gives for ``--only ONLY...`` (its defaults otherwise)."""
    return argparse.Namespace(only=list(only), skip=[], quick=False, cases=sweep.FULL_CASES,
                              seed=sweep.SEED, batch=32, repeat=10)


def _console():
    return Console(record=True, width=240)


def test_without_a_gpu_it_says_so_and_exits_with_its_own_code(tmp_path):
    # The script itself, with every GPU hidden from it (whatever this machine has).
    script = _tool('--out-dir', str(tmp_path), CUDA_VISIBLE_DEVICES='')
    assert script.returncode == EXIT_NO_GPU == 3 and 'No CUDA device' in script.stdout
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_report_and_exit_codes(tmp_path):
    with emulation.Emulator('asan') as emulator:
        outcomes = sweep.run_sweep(CASES[:2], emulator.launch)
    passing = [report.Check('environment', 'info', 'a GPU'),
               *report.sweep_checks('sweep', outcomes),
               report.Check('compute-sanitizer', 'skip', 'not on PATH')]
    console = _console()
    panels = {'fraction of copy bandwidth': {'64x56x56 fp16 fwd': 0.8, 'nan': float('nan')}}
    assert steps.finish(console, passing, outcomes, panels, tmp_path, cases=2) == 0
    text = console.export_text()
    assert 'sweep fp16' in text and 'PASS' in text and 'SKIP' in text
    assert 'All checks passed' in text
    written = json.loads((tmp_path / 'check_cuda.json').read_text())
    assert written['exit_code'] == 0 and written['cases'] == 2
    assert [c['name'] for c in written['checks']] == [c.name for c in passing]
    assert (tmp_path / 'check_cuda.png').read_bytes()[:4] == b'\x89PNG'

    failing = passing + [report.Check('gpu test test_gpu_opcheck', 'fail', 'AssertionError')]
    console = _console()
    assert steps.finish(console, failing, outcomes, {}, tmp_path) == 1
    assert 'A check failed' in console.export_text()
    assert 'All checks passed' not in console.export_text()
    assert json.loads((tmp_path / 'check_cuda.json').read_text())['exit_code'] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')]  # no temporaries left
    with pytest.raises(ValueError, match='status'):
        report.Check('x', 'ok')


def test_sweep_against_the_emulated_kernels():
    """The check's sweep with the host emulation as executor: the CI sweep, as on a GPU."""
    with emulation.Emulator('asan') as emulator:
        checks, outcomes = steps.random_sweep(CASES, emulator.launch)
        assert [c.name for c in checks] == [f'sweep {d}' for d in sweep.DTYPES]
        assert all(c.status == 'pass' for c in checks)
        assert len(outcomes) == len(CASES) * 4 * 3

        def wrong_by_one_element(launch, a, b, shape, threads):
            result = emulator.launch(launch, a, b, shape, threads)
            if 'grad_weight' in launch.kernel and result.dtype == torch.float16:
                result.view(-1)[-1] += 1.0
            return result

        checks, _ = steps.random_sweep(CASES[:2], wrong_by_one_element)
    status = {c.name: c.status for c in checks}
    assert status == {'sweep fp64': 'pass', 'sweep fp32': 'pass', 'sweep fp16': 'fail',
                      'sweep bf16': 'pass'}
    failed = next(c for c in checks if c.status == 'fail')
    assert 'grad_weight' in failed.detail and CASES[0].describe() in failed.detail
    assert failed.data['failures'][0]['op'] == 'grad_weight'


def test_gpu_tests_are_reported_one_by_one(tmp_path):
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_fake.py').write_text(textwrap.dedent('''
        import pytest

        @pytest.mark.gpu
        def test_passes():
            pass

        @pytest.mark.gpu
        def test_fails():
            assert 1 == 2, 'one is not two'

        @pytest.mark.gpu
        def test_skips():
            pytest.skip('needs more memory')

        def test_not_gpu():
            raise AssertionError('must not run')
    '''))
    (tmp_path / 'pytest.ini').write_text('[pytest]\nmarkers =\n    gpu: needs a GPU\n')
    checks = gpu_tests.gpu_tests(tmp_path, ['tests/test_fake.py'])
    by_name = {c.name: c for c in checks}
    assert set(by_name) == {'gpu test test_passes', 'gpu test test_fails', 'gpu test test_skips'}
    assert by_name['gpu test test_passes'].status == 'pass'
    assert by_name['gpu test test_fails'].status == 'fail'
    assert 'one is not two' in by_name['gpu test test_fails'].detail
    # A skipped gpu test (e.g. for lack of GPU memory) checked nothing: it is no pass.
    assert by_name['gpu test test_skips'].status == 'fail'
    assert 'not checked: needs more memory' in by_name['gpu test test_skips'].detail
    missing = gpu_tests.gpu_tests(tmp_path, ['tests/test_missing.py'])
    assert [c.status for c in missing] == ['skip']


def test_no_gpu_test_collected_is_no_pass(tmp_path):
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_fake.py').write_text('def test_not_gpu():\n    pass\n')
    (tmp_path / 'pytest.ini').write_text('[pytest]\nmarkers =\n    gpu: needs a GPU\n')
    (check, ) = gpu_tests.gpu_tests(tmp_path, ['tests/test_fake.py'])
    assert check.status == 'fail' and 'no gpu test was collected' in check.detail
    assert 'exit status 5' in check.detail


def test_pytest_failing_without_a_failed_test_is_no_pass(tmp_path):
    """A non-zero status though every test passed: an error at teardown of the session."""
    (tmp_path / 'tests').mkdir()
    (tmp_path / 'tests' / 'test_fake.py').write_text(
        'import pytest\n\n@pytest.mark.gpu\ndef test_passes():\n    pass\n')
    (tmp_path / 'conftest.py').write_text(
        'def pytest_sessionfinish(session, exitstatus):\n    session.exitstatus = 3\n')
    (tmp_path / 'pytest.ini').write_text('[pytest]\nmarkers =\n    gpu: needs a GPU\n')
    checks = gpu_tests.gpu_tests(tmp_path, ['tests/test_fake.py'])
    assert [c.status for c in checks] == ['pass', 'fail']
    assert 'exit status 3 though no test failed' in checks[1].detail
    assert gpu_tests.gpu_test_gaps(checks[:1], 0, '') == []


def test_a_sweep_of_no_geometry_is_no_pass(tmp_path):
    script = _tool('--cases', '0')
    assert script.returncode == 2  # argparse's usage error
    assert 'a sweep of no geometry checks nothing' in script.stderr
    checks, outcomes = steps.random_sweep([], lambda *args: None)
    assert [c.status for c in checks] == ['fail'] and outcomes == []


def test_every_step_skipped_is_no_pass(tmp_path, monkeypatch):
    monkeypatch.setattr(launcher, 'AVAILABLE', False)  # the kernels cannot run: steps skip
    args = _args('environment', 'sweep', 'gpu-tests')
    monkeypatch.setattr(environment, 'environment', lambda: report.Check('environment', 'info'))
    checks, outcomes, panels = steps.run_steps(args, _console(), TOOL)
    assert [c.status for c in checks] == ['info', 'skip', 'skip']
    console = _console()
    assert steps.finish(console, checks, outcomes, panels, tmp_path) == 1
    assert 'nothing was checked' in console.export_text()
    assert 'All checks passed' not in console.export_text()
    written = json.loads((tmp_path / 'check_cuda.json').read_text())
    assert written['exit_code'] == 1 and written['checks'][-1]['status'] == 'fail'


def test_compute_sanitizer_reruns_the_sweep_under_it(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    assert gpu_tests.compute_sanitizer(TOOL).status == 'skip'
    fake = tmp_path / 'compute-sanitizer'
    for code, status in ((0, 'pass'), (86, 'fail')):
        fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\necho "ERROR SUMMARY: 0"\n'
                        f'exit {code}\n')
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        check = gpu_tests.compute_sanitizer(TOOL, cases=5)
        assert check.status == status
        assert f'exit status {code}' in check.detail
    args = (tmp_path / 'args').read_text().split()
    assert args[:4] == ['--tool', 'memcheck', '--error-exitcode', '86']
    assert args[-6:-2] == ['--only', 'sweep', '--cases', '5']
    assert args[5].endswith('check_cuda.py')


def test_a_broken_step_is_reported_not_fatal(tmp_path, monkeypatch):
    def broken():
        raise RuntimeError('driver too old')

    monkeypatch.setattr(environment, 'environment', broken)
    monkeypatch.setattr(launcher, 'AVAILABLE', False)  # a GPU machine's kernels unavailable
    args = _args('environment', 'compile', 'sweep')
    checks, outcomes, _ = steps.run_steps(args, _console(), TOOL)
    by_name = {c.name: c for c in checks}
    assert by_name['environment'].status == 'fail'
    assert 'driver too old' in by_name['environment'].data['traceback']
    # Compiling fails with the launcher's reason, the sweep is skipped.
    assert by_name['compile'].status == 'fail' and 'no CUDA device' in by_name['compile'].detail
    assert by_name['sweep'].status == 'skip' and outcomes == []


def test_launch_parameter_sweep_bookkeeping():
    """Spilling candidates are not run, wrong ones fail the check, the fastest is picked per
    shape; correctness is judged by the emulated kernels built with each candidate."""
    default, fewer = cuda.PARAMS, cuda.LaunchParams(rows=3, channels=4)
    spilling, broken = cuda.LaunchParams(4, 8, 2), cuda.LaunchParams(6, 16, 1)
    shapes = ['32x64x56x56', '32x512x7x7']
    times = {(default, shapes[0]): 2.0, (default, shapes[1]): 1.0,
             (fewer, shapes[0]): 1.6, (fewer, shapes[1]): 1.25}
    verified = []

    def verify(params):
        verified.append(params)
        if params == broken:  # a candidate whose results are wrong
            return False
        with emulation.Emulator('asan', params) as emulator:
            outcomes = sweep.run_sweep(CASES[:3], emulator.launch, [torch.float32],
                                       params=params)
        return all(o.passed for o in outcomes)

    results = launch_params.sweep_launch_params(
        [default, fewer, spilling, broken], shapes, spills=lambda p: p == spilling,
        verify=verify, time_ms=lambda p, s: times[(p, s)])
    assert verified == [default, fewer, broken]  # the spilling one is never run
    assert [r.correct for r in results] == [True, True, None, False]
    best = launch_params.fastest(results, default)
    assert best[shapes[0]]['params'] == fewer._asdict()
    assert best[shapes[0]]['speedup'] == pytest.approx(2.0 / 1.6)
    assert best[shapes[1]]['params'] == default._asdict() and best[shapes[1]]['speedup'] == 1
    checks = launch_params.launch_param_checks(results, default)
    assert checks[0].status == 'fail' and '1 give wrong results' in checks[0].detail
    assert [c.name for c in checks[1:]] == [f'launch params {s}' for s in shapes]
    assert launch_params.launch_param_checks(results[:3], default)[0].status == 'pass'


def test_selfcheck_step_times_the_first_call_and_fails_a_wrong_kernel(cpu_launcher,
                                                                     monkeypatch):
    """The step on the CPU: the emulated kernels as the GPU, a planted wrong one caught."""
    wrong = 'involution_grad_input_any_f16'
    with emulation.Emulator('asan') as emulator:
        def launch(launch, tensors, source=cuda.SOURCE, params=cuda.PARAMS,
                   threads=cuda.THREADS):
            a, b, result = tensors
            result.copy_(emulator.launch(launch, a, b, result.shape, threads))
            if launch.kernel == wrong:
                result.view(-1)[0] += 1.0

        monkeypatch.setattr(launcher, 'load', lambda *args, **kwargs: None)
        monkeypatch.setattr(launcher, 'launch', launch)
        with pytest.warns(RuntimeWarning, match=wrong):
            check = first_use.selfcheck(batch=1, channels=16, size=9,
                                         device=torch.device('cpu'), synchronize=lambda: None)
    assert check.status == 'fail' and check.data['failed'] == [wrong]
    assert wrong in check.detail and '24 entry points, 1 failed' in check.detail
    rows = check.data['entry_points']
    assert len(rows) == 24 and all(r['first_ms'] > 0 and r['later_ms'] > 0
                                   for r in rows.values())
    assert 6840 <= min(r['probe_bytes'] for r in rows.values())
    monkeypatch.setenv('MMREDNET_CUDA_SELFCHECK', '0')
    assert first_use.selfcheck().status == 'skip'
