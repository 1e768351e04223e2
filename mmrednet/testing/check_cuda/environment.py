"""The ``environment`` and ``compile`` steps: what the GPU is, and every entry point built."""
import platform
from typing import Tuple

import torch

from mmrednet.benchmarks import cuda_baseline
from mmrednet.ops import cuda
from mmrednet.ops.cuda import launcher
from mmrednet.testing import nvrtc, sweep
from mmrednet.testing.report import Check


def environment() -> Check:
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    info = dict(device=props.name, capability=f'{props.major}.{props.minor}',
                sms=props.multi_processor_count, memory_gb=round(props.total_memory / 2**30, 1),
                torch=torch.__version__, cuda=torch.version.cuda, python=platform.python_version(),
                cupy=getattr(launcher.cupy, '__version__', None))
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
        for source, names in ((cuda.SOURCE, cuda.entry_points(dtype)),
                              (cuda_baseline.SOURCE, cuda_baseline.entry_points(dtype))):
            for name in names:
                try:
                    function = launcher.load(name, dtype, device, source, params)
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
