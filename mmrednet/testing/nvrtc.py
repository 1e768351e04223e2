"""Compile the CUDA kernels exactly as the launcher does, without a GPU, and read ptxas' report.

``mmrednet.ops.cuda.load`` compiles through ``cupy.RawModule(code, options,
backend='nvrtc')``, which needs a GPU even to compile. This module runs NVRTC
(the ``nvidia-cuda-nvrtc`` wheel, through ``cuda-bindings``) with the options
CuPy 14 adds, so CI sees the device code a user's GPU gets:

* ``cupy/_core/core.pyx`` ``assemble_cupy_compiler_options``: ``--std=c++17``
  unless a standard is given (ours gives ``-std=c++17``), and include
  directories (CuPy's CCCL copy, its own headers, the CUDA headers). The kernels
  include no header, so the include directories cannot change the code; they
  are left out, and an ``#include`` added to the source fails here.
* ``cupy/cuda/compiler.py`` ``_compile_with_cache_cuda``: ``-ftz=true``.
* same file, ``_compile_using_nvrtc_no_warning``: ``-arch=sm_XX`` (a cubin;
  ``compute_XX`` only with ``CUPY_COMPILE_WITH_PTX=1`` or a device newer than
  NVRTC knows), then ``--device-as-default-execution-space``.

:func:`compile_with_cupy` compiles through CuPy's own compiler module instead,
so that what CuPy adds (and any change of it in a CuPy release) is what CI
compiles, not only our reading of it.

``-Xptxas=-v`` makes ptxas report registers, stack frame, spills and local
memory per entry point; :func:`resources` parses it and :func:`occupancy`
turns registers into resident blocks an SM.
"""
import io
import re
import sys
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple
from unittest import mock

import torch

from mmrednet.ops import cuda
from mmrednet.ops.cuda import fused_planning, launcher

ARCHS = ('75', '80', '90')  # Turing (the oldest NVRTC 13 builds), Ampere A100, Hopper H100/H200
PTXAS_VERBOSE = '-Xptxas=-v'


def cupy_options(options: Sequence[str], arch: str) -> Tuple[str, ...]:
    """The options CuPy 14 hands NVRTC for ``RawModule(options=options)`` on sm_``arch``."""
    return (*options, '-ftz=true', f'-arch=sm_{arch}', '--device-as-default-execution-space')


def launcher_options(dtype: torch.dtype, arch: str,
                     params: cuda.LaunchParams = cuda.PARAMS) -> Tuple[str, ...]:
    """What NVRTC gets when the launcher loads the kernels for ``dtype``, plus ptxas' report."""
    return (*cupy_options(cuda.compile_options(dtype, params), arch), PTXAS_VERBOSE)


@dataclass
class Compiled:
    ok: bool
    log: str
    cubin: bytes


def compile_source(source: str, options: Sequence[str], name: str = 'kernels.cu') -> Compiled:
    """Compile ``source`` with NVRTC; the log holds errors, warnings and ptxas' report."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise RuntimeError('NVRTC is needed: pip install nvidia-cuda-nvrtc cuda-bindings '
                           '(the "tests" extra)') from exc
    err, program = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(nvrtc, err)
    try:
        encoded = [o.encode() for o in options]
        (result, ) = nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
        err, size = nvrtc.nvrtcGetProgramLogSize(program)
        _check(nvrtc, err)
        log = b' ' * size
        _check(nvrtc, nvrtc.nvrtcGetProgramLog(program, log)[0])
        cubin = b''
        ok = result == nvrtc.nvrtcResult.NVRTC_SUCCESS
        if ok:
            err, size = nvrtc.nvrtcGetCUBINSize(program)
            _check(nvrtc, err)
            cubin = b' ' * size
            _check(nvrtc, nvrtc.nvrtcGetCUBIN(program, cubin)[0])
        return Compiled(ok, log.rstrip(b'\0').decode(errors='replace'), cubin)
    finally:
        nvrtc.nvrtcDestroyProgram(program)


def compile_with_cupy(source: str, options: Sequence[str], arch: str) -> Compiled:
    """Compile ``source`` as ``cupy.RawModule(code=source, options=options,
    backend='nvrtc')`` does for an sm_``arch`` device, without a device.

    The steps of RawModule, through CuPy's own functions:
    ``cupy._core.core.assemble_cupy_compiler_options`` (the C++ standard, CuPy's
    include directories), ``-ftz=true`` (the one option
    ``cupy.cuda.compiler._compile_with_cache_cuda`` adds before it compiles; the
    rest of it is the binary cache and loading the module, which need a
    driver), then ``cupy.cuda.compiler._compile_using_nvrtc_no_warning``: the
    arch option, ``--device-as-default-execution-space``, ``--pch`` where CuPy
    uses it, and its NVRTC program class. Only the device query for the arch
    option (``_get_arch_for_options_for_nvrtc``) is replaced, by its answer for a
    sm_``arch`` device that NVRTC knows (a cubin).

    Raises:
        ImportError: CuPy is not installed.
    """
    from cupy._core.core import assemble_cupy_compiler_options
    from cupy.cuda import compiler

    log = io.StringIO()
    options = assemble_cupy_compiler_options(tuple(options)) + ('-ftz=true', )
    with mock.patch.object(compiler, '_get_arch_for_options_for_nvrtc',
                           lambda arch=None: (f'-arch=sm_{arch}', 'cubin')):
        try:
            cubin, _ = compiler._compile_using_nvrtc_no_warning(source, options, arch,
                                                                log_stream=log)
        except compiler.CompileException as exc:
            return Compiled(False, str(exc), b'')
    return Compiled(True, log.getvalue(), cubin)


def _check(nvrtc, err) -> None:
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(f'NVRTC call failed: {err}')


def version() -> Tuple[int, int]:
    from cuda.bindings import nvrtc
    _, major, minor = nvrtc.nvrtcVersion()
    return major, minor


class Resources(NamedTuple):
    """ptxas' report of one entry point."""
    registers: int
    stack: int  # bytes of stack frame
    spill_stores: int
    spill_loads: int
    local: int  # bytes of local memory (lmem)

    @property
    def clean(self) -> bool:
        """No stack frame, spills or local memory: everything lives in registers."""
        return not (self.stack or self.spill_stores or self.spill_loads or self.local)


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_FRAME = re.compile(r'(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads')
_USED = re.compile(r'Used (\d+) registers')
_LMEM = re.compile(r'(\d+) bytes lmem')


def resources(log: str) -> Dict[str, Resources]:
    """Entry point -> its resources, from an ``-Xptxas=-v`` log.

    Raises:
        ValueError: an entry point whose report is incomplete.
    """
    found: Dict[str, Resources] = {}
    blocks = _ENTRY.split(log)[1:]  # name, arch, text, name, arch, text, ...
    for name, _, text in zip(blocks[0::3], blocks[1::3], blocks[2::3], strict=True):
        frame, used = _FRAME.search(text), _USED.search(text)
        if frame is None or used is None:
            raise ValueError(f'ptxas reported no resources for {name}:\n{text}')
        lmem = _LMEM.search(text)
        found[name] = Resources(int(used.group(1)), *(int(v) for v in frame.groups()),
                                int(lmem.group(1)) if lmem else 0)
    return found


def warnings_in(log: str) -> List[str]:
    """The compiler's warning lines (ptxas' ``info`` lines are not warnings)."""
    return [line for line in log.splitlines() if re.search(r'\bwarning\b', line, re.I)]


# Per-SM limits of the architectures of ARCHS (CUDA C++ Programming Guide, "Compute
# Capabilities", table of technical specifications): registers, threads, blocks.
SM_LIMITS = {'75': (65536, 1024, 16), '80': (65536, 2048, 32), '90': (65536, 2048, 32)}
_REGISTER_UNIT = 256  # registers are allocated to a warp in units of 256
_SUB_PARTITIONS = 4  # an SM's register file is split among 4 schedulers


def occupancy(registers: int, arch: str = '90', threads: int = cuda.THREADS,
              limits: Optional[Tuple[int, int, int]] = None) -> int:
    """Resident blocks of ``threads`` an SM holds at ``registers`` a thread.

    The arithmetic of CUDA's occupancy calculator (``cuda_occupancy.h``): a warp
    takes ``registers * 32`` rounded up to 256 registers; each of the 4
    sub-partitions of the register file (16384 registers) holds whole warps;
    blocks are whole groups of their warps, capped by the SM's threads and
    blocks. No shared memory is used, so it limits nothing. ``limits``
    (registers, threads, blocks an SM) replaces those of ``arch``.
    """
    register_file, max_threads, max_blocks = limits or SM_LIMITS[arch]
    per_warp = -(-registers * 32 // _REGISTER_UNIT) * _REGISTER_UNIT
    warps = register_file // _SUB_PARTITIONS // per_warp * _SUB_PARTITIONS
    warps_per_block = -(-threads // 32)
    return min(warps // warps_per_block, max_threads // threads, max_blocks)


def resource_table(archs: Sequence[str] = ARCHS, params: cuda.LaunchParams = cuda.PARAMS,
                   fused: bool = False) -> str:
    """Markdown: registers a thread per entry point, arch and dtype, and blocks an SM.

    ``python -m mmrednet.testing.nvrtc`` prints it (the README's table);
    ``python -m mmrednet.testing.nvrtc --fused`` that of the fused op's kernels
    (``kernels/involution_fused_cuda.cu``, docs/notes/cuda_kernels.md).
    """
    source = launcher.source_text(cuda.FUSED_SOURCE if fused else cuda.SOURCE)
    entry_points = fused_planning.entry_points if fused else cuda.entry_points
    prefix = 'involution_fused_' if fused else 'involution_'
    dtypes = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16,
              'fp64': torch.float64}
    registers: Dict[Tuple[str, str, str], int] = {}  # (variant, arch, dtype) -> registers
    for arch in archs:
        for name, dtype in dtypes.items():
            compiled = compile_source(source, launcher_options(dtype, arch, params))
            for entry, found in resources(compiled.log).items():
                if not found.clean:
                    raise RuntimeError(f'{entry} spills on sm_{arch}: {found}')
                registers[(entry.rsplit('_', 1)[0], arch, name)] = found.registers
    variants = [name.rsplit('_', 1)[0] for name in entry_points(torch.float32)]
    header = ['entry point'] + [f'sm_{a} registers ({"/".join(dtypes)})' for a in archs]
    header += [f'sm_{a} blocks' for a in archs]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for variant in variants:
        cells = [variant[len(prefix):]]
        for arch in archs:
            cells.append(' / '.join(str(registers[(variant, arch, d)]) for d in dtypes))
        for arch in archs:
            cells.append(' / '.join(str(occupancy(registers[(variant, arch, d)], arch))
                                    for d in dtypes))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


if __name__ == '__main__':
    print(resource_table(fused='--fused' in sys.argv[1:]))
