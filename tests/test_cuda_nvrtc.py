"""The device code a user's GPU gets, compiled here exactly as the launcher compiles it.

NVRTC (from the ``nvidia-cuda-nvrtc`` wheel) with CuPy's added options and
``cuda.compile_options(dtype)`` for sm_75, sm_80 and sm_90 and every dtype:
no errors, no warnings, and no spill, local memory or stack frame in any entry
point (everything a thread holds lives in registers, as the kernels' design
needs). The register counts are what the README's occupancy table reports.

The same gate again through CuPy's own compiler module (the CuPy a user
installs, the ``tests`` extra's), so that what CuPy adds is what is compiled.
"""
import importlib.util
import time

import pytest
import torch

from mmrednet.benchmarks import cuda_baseline
from mmrednet.ops import cuda
from mmrednet.testing import nvrtc

DTYPES = {'f32': torch.float32, 'f64': torch.float64, 'f16': torch.float16,
          'bf16': torch.bfloat16}


def _assert_clean(compiled, expected):
    assert compiled.ok, compiled.log
    assert not nvrtc.warnings_in(compiled.log), compiled.log
    found = nvrtc.resources(compiled.log)
    assert sorted(found) == sorted(expected)  # the launcher's names, no more, no fewer
    dirty = {name: r for name, r in found.items() if not r.clean}
    assert not dirty, f'spills, local memory or a stack frame: {dirty}'
    assert all(0 < r.registers <= 255 for r in found.values())
    assert compiled.cubin[:4] == b'\x7fELF'  # a cubin for the arch, not PTX
    return found


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('arch', nvrtc.ARCHS)
def test_kernels_compile_as_the_launcher_does_without_spills(arch, dtype):
    options = nvrtc.launcher_options(DTYPES[dtype], arch)
    compiled = nvrtc.compile_source(cuda.SOURCE.read_text(), options)
    _assert_clean(compiled, cuda.entry_points(DTYPES[dtype]))


needs_cupy = pytest.mark.skipif(
    importlib.util.find_spec('cupy') is None,
    reason='CuPy is not installed (pip install "mmrednet[tests]" installs it)')


@needs_cupy
@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('arch', nvrtc.ARCHS)
def test_kernels_compile_through_cupys_compiler_without_spills(arch, dtype):
    """CuPy's compiler module, its options and NVRTC program, for every arch and dtype."""
    start = time.perf_counter()
    options = (*cuda.compile_options(DTYPES[dtype]), nvrtc.PTXAS_VERBOSE)
    compiled = nvrtc.compile_with_cupy(cuda.SOURCE.read_text(), options, arch)
    _assert_clean(compiled, cuda.entry_points(DTYPES[dtype]))
    assert f"for 'sm_{arch}'" in compiled.log  # ptxas compiled for this arch
    print(f'CuPy compile sm_{arch} {dtype}: {time.perf_counter() - start:.2f} s')


@needs_cupy
def test_the_cupy_gate_sees_what_cupy_adds_and_a_compile_error():
    """Its options are CuPy's (its include directories among them), and an error fails."""
    from cupy._core.core import assemble_cupy_compiler_options

    added = assemble_cupy_compiler_options(())
    assert any(o.startswith('-I') for o in added)  # not in the plain NVRTC gate
    broken = nvrtc.compile_with_cupy('extern "C" __global__ void f() { undefined(); }',
                                     (nvrtc.PTXAS_VERBOSE, ), '90')
    assert not broken.ok and 'undefined' in broken.log


@pytest.mark.parametrize('arch', nvrtc.ARCHS)
def test_baseline_kernels_compile_without_spills(arch):
    # The launcher compiles the baseline with a dtype's options, whose dtype macros
    # the baseline ignores: one compile per arch sees the code of all of them.
    compiled = nvrtc.compile_source(cuda_baseline.SOURCE.read_text(),
                                    nvrtc.launcher_options(torch.float32, arch))
    _assert_clean(compiled, [name for dtype in DTYPES.values()
                             for name in cuda_baseline.entry_points(dtype)])


def test_options_are_cupys():
    """CuPy 14's RawModule adds -ftz=true, -arch=sm_XX, --device-as-default-execution-space."""
    options = nvrtc.launcher_options(torch.float16, '80')
    assert options[:len(cuda.compile_options(torch.float16))] == cuda.compile_options(
        torch.float16)
    assert options[-4:] == ('-ftz=true', '-arch=sm_80', '--device-as-default-execution-space',
                            '-Xptxas=-v')
    assert '-DMMREDNET_WITH_F16' in options and f'-DMMREDNET_ROWS={cuda.PARAMS.rows}' in options


def test_a_header_include_fails_the_gate():
    """CuPy's include directories are left out: an #include must not slip in unnoticed."""
    source = '#include <cuda_fp16.h>\n' + cuda.SOURCE.read_text()
    compiled = nvrtc.compile_source(source, nvrtc.launcher_options(torch.float32, '90'))
    assert not compiled.ok and 'cuda_fp16.h' in compiled.log


def test_resources_parse_spills_and_local_memory():
    log = """ptxas info    : Compiling entry function 'a' for 'sm_90'
ptxas info    : Function properties for a
ptxas         .     56 bytes stack frame, 60 bytes spill stores, 96 bytes spill loads
ptxas info    : Used 128 registers, used 0 barriers, 16 bytes lmem, 504 bytes cmem[0]
ptxas info    : Compiling entry function 'b' for 'sm_90'
ptxas info    : Function properties for b
ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 504 bytes cmem[0]
"""
    found = nvrtc.resources(log)
    assert found == {'a': nvrtc.Resources(128, 56, 60, 96, 16),
                     'b': nvrtc.Resources(40, 0, 0, 0, 0)}
    assert not found['a'].clean and found['b'].clean
    with pytest.raises(ValueError, match='no resources for c'):
        nvrtc.resources("ptxas info    : Compiling entry function 'c' for 'sm_90'\n")


def test_the_gate_sees_local_memory():
    """An array indexed at run time cannot live in registers: ptxas puts it on the stack."""
    source = """extern "C" __global__ void dynamic(float* p, int i) {
      float a[64];
      for (int k = 0; k < 64; ++k) a[(k * 7 + i) & 63] = p[k];
      p[0] = a[p[1] > 0 ? i & 63 : 0];
    }"""
    found = nvrtc.resources(nvrtc.compile_source(source, nvrtc.cupy_options(
        (nvrtc.PTXAS_VERBOSE, ), '90')).log)
    assert found['dynamic'].stack >= 256 and not found['dynamic'].clean


@pytest.mark.parametrize('registers,arch,blocks', [
    (255, '90', 1), (176, '90', 1), (168, '80', 1), (128, '90', 2), (129, '90', 1),
    (96, '80', 2), (80, '90', 3), (64, '90', 4), (32, '90', 8), (64, '75', 4), (32, '75', 4)])
def test_occupancy(registers, arch, blocks):
    """Blocks of 256 threads an SM, as CUDA's occupancy calculator gives them."""
    assert nvrtc.occupancy(registers, arch) == blocks
