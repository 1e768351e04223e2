"""The Python-free runner of ``.pt2`` packages: build it, run it.

The runner is a C++ program (its sources: ``tools/deployment/cpp`` of the
checkout, which the caller names) linked against torch's CPU libraries only;
it dlopens the op library given on its command line, so the process that runs
a package never has Python in it.
"""
import os.path as osp
import shutil
import subprocess
from typing import List, Optional, Sequence

import torch
import torch.utils

from ...ops import op_library_path
from .package import PackageInfo

EXECUTABLE = 'aoti_runner'


def build_runner(source: str, build_dir: str) -> str:
    """Configure and build the runner from ``source`` (its CMake project) in ``build_dir``
    (again only if its sources changed); the executable's path.

    A clear error when the sources, cmake or a C++ compiler are missing.
    """
    cmake = shutil.which('cmake')
    if cmake is None:
        raise RuntimeError('building the AOTInductor runner needs cmake (apt install cmake, '
                           'or pip install cmake) and a C++20 compiler')
    if not osp.isfile(osp.join(source, 'CMakeLists.txt')):
        raise FileNotFoundError(f'the runner\'s sources are not there: {source} (they are '
                                'tools/deployment/cpp of the git checkout, not in the wheel)')
    steps = ([cmake, '-S', source, '-B', build_dir, '-DCMAKE_BUILD_TYPE=Release',
              f'-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}'],
             [cmake, '--build', build_dir])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f'{" ".join(step)} failed:\n{done.stdout[-4000:]}'
                               f'{done.stderr[-4000:]}')
    return osp.join(build_dir, EXECUTABLE)


def runner_op_library() -> Optional[str]:
    """The op library file the runner loads (built without pybind), or None where it is
    not built."""
    try:
        return op_library_path()
    except RuntimeError:  # MMREDNET_WITH_EXT=0, or not built
        return None


def _command(runner: str, op_library: str, package: str, input_file: str, output: str,
             graph: str, threads: Optional[int]) -> List[str]:
    """The runner's command line; ``output``: a file, or ``--serve``."""
    model = PackageInfo.read(package).model_name(graph)
    return [runner, op_library, package, input_file, output, '--graph', model,
            *(['--threads', str(threads)] if threads else [])]


def run_package(runner: str, op_library: str, package: str, input: torch.Tensor,
                work_dir: str, graph: str = 'main',
                threads: Optional[int] = None) -> List[torch.Tensor]:
    """Run graph ``graph`` of ``package`` on ``input`` in the runner: its outputs (flat)."""
    input_file, output_file = osp.join(work_dir, 'input.pt'), osp.join(work_dir, 'output.pt')
    torch.save(input.contiguous(), input_file)
    done = subprocess.run(_command(runner, op_library, package, input_file, output_file, graph,
                                   threads), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f'the runner failed (exit {done.returncode}): {done.stderr[-4000:]}')
    return list(torch.load(output_file, weights_only=True))


class ServedPackage:
    """A package loaded once by the runner (``--serve``), run on request: the
    benchmark's C++-loaded case. Each call returns the run's own time in seconds.

    A context manager: ``close`` (or leaving the ``with``) ends the runner process.
    """

    def __init__(self, runner: str, op_library: str, package: str, input: torch.Tensor,
                 work_dir: str, threads: int, graph: str = 'main',
                 extra: Sequence[str] = ()) -> None:
        input_file = osp.join(work_dir, f'{osp.basename(package)}.input.pt')
        torch.save(input.contiguous(), input_file)
        self.process = subprocess.Popen(
            [*_command(runner, op_library, package, input_file, '--serve', graph, threads),
             *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self) -> float:
        self.process.stdin.write('run\n')
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'the runner stopped (exit {self.process.wait()})')
        return float(line) / 1e3

    def close(self) -> None:
        """End the runner (it exits when its input closes); idempotent."""
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()

    def __enter__(self) -> 'ServedPackage':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
