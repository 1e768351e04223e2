"""The Python-free runner of ``.pt2`` packages (``tools/deployment/cpp``): build it, run it.

The runner is a C++ program linked against torch's CPU libraries only; it
dlopens the op library given on its command line, so the process that runs a
package never has Python in it.
"""
import os.path as osp
import shutil
import subprocess
from typing import List, Optional, Sequence

import torch

SOURCE = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.realpath(__file__)))), 'tools',
                  'deployment', 'cpp')
EXECUTABLE = 'aoti_runner'


def build_runner(build_dir: str) -> str:
    """Configure and build the runner in ``build_dir`` (again only if its sources changed);
    the executable's path. A clear error when cmake or a C++ compiler is missing."""
    cmake = shutil.which('cmake')
    if cmake is None:
        raise RuntimeError('building the AOTInductor runner needs cmake (apt install cmake, '
                           'or pip install cmake) and a C++20 compiler')
    if not osp.isdir(SOURCE):
        raise FileNotFoundError(f'the runner\'s sources are not there: {SOURCE} (they are in '
                                'the git checkout, not in the wheel)')
    import torch.utils
    steps = ([cmake, '-S', SOURCE, '-B', build_dir, '-DCMAKE_BUILD_TYPE=Release',
              f'-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}'],
             [cmake, '--build', build_dir])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f'{" ".join(step)} failed:\n{done.stdout[-4000:]}'
                               f'{done.stderr[-4000:]}')
    return osp.join(build_dir, EXECUTABLE)


def op_library() -> Optional[str]:
    """The op library the runner loads (built without pybind), or None where it is not built."""
    from ..ops import op_library_path
    try:
        return op_library_path()
    except RuntimeError:  # MMREDNET_WITH_EXT=0, or not built
        return None


def run_package(runner: str, op_library: str, package: str, input: torch.Tensor,
                work_dir: str, graph: str = 'main',
                threads: Optional[int] = None) -> List[torch.Tensor]:
    """Run graph ``graph`` of ``package`` on ``input`` in the runner: its outputs (flat)."""
    input_file, output_file = osp.join(work_dir, 'input.pt'), osp.join(work_dir, 'output.pt')
    torch.save(input.contiguous(), input_file)
    command = [runner, op_library, package, input_file, output_file, '--graph', graph]
    if threads:
        command += ['--threads', str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f'the runner failed (exit {done.returncode}): {done.stderr[-4000:]}')
    return list(torch.load(output_file, weights_only=True))


class ServedPackage:
    """A package loaded once by the runner (``--serve``), run on request: the
    benchmark's C++-loaded case. Each call returns the run's own time in seconds."""

    def __init__(self, runner: str, op_library: str, package: str, input: torch.Tensor,
                 work_dir: str, threads: int, extra: Sequence[str] = ()) -> None:
        input_file = osp.join(work_dir, f'{osp.basename(package)}.input.pt')
        torch.save(input.contiguous(), input_file)
        self.process = subprocess.Popen(
            [runner, op_library, package, input_file, '--serve', '--threads', str(threads),
             *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self) -> float:
        self.process.stdin.write('run\n')
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f'the runner stopped (exit {self.process.wait()})')
        return float(line) / 1e3

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
