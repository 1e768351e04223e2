"""The ``gpu-tests`` and ``compute-sanitizer`` steps: the repository's ``gpu`` tests, one
check each, and the sweep step again under compute-sanitizer's memcheck."""
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import List, Sequence

from mmrednet.testing.report import Check

GPU_TESTS = ('tests/test_cuda.py', 'tests/test_memory.py')
SANITIZER_CASES = 12


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


def gpu_tests(root: Path, files: Sequence[str] = GPU_TESTS) -> List[Check]:
    """Run ``pytest -m gpu`` on ``files`` of the source checkout ``root``."""
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


def compute_sanitizer(script: Path, cases: int = SANITIZER_CASES) -> Check:
    """``script`` (``tools/check_cuda.py``) run again under memcheck, its sweep step only."""
    executable = shutil.which('compute-sanitizer')
    if executable is None:
        return Check('compute-sanitizer', 'skip', 'compute-sanitizer is not on PATH (it comes '
                     'with the CUDA toolkit)')
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        command = [executable, '--tool', 'memcheck', '--error-exitcode', '86',
                   sys.executable, str(script), '--only', 'sweep', '--cases', str(cases),
                   '--out-dir', tmp]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (result.stdout + result.stderr).strip()
    tail = output.splitlines()[-1] if output else ''
    status = 'pass' if result.returncode == 0 else 'fail'
    return Check('compute-sanitizer memcheck', status,
                 f'{cases} geometries, every dtype and op: exit status {result.returncode}; {tail}',
                 time.perf_counter() - start, dict(command=command, output=output[-20000:]))
