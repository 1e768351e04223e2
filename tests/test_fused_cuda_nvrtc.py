"""The fused op's device code, compiled here exactly as the launcher compiles it.

The launcher hands NVRTC one text (``launcher.source_text``: the fused source
with ``involution_cuda.cu`` inlined) with ``cuda.compile_options(dtype)``; for
sm_75, sm_80 and sm_90 and every dtype: no error or warning, exactly the fused
entry points, and no spill, local memory or stack frame (everything in
registers). Then the same through CuPy's own compiler module.
"""
import importlib.util

import pytest
import torch

from mmrednet.ops import cuda
from mmrednet.ops.cuda import fused_planning, launcher
from mmrednet.testing import nvrtc

DTYPES = {'f32': torch.float32, 'f64': torch.float64, 'f16': torch.float16,
          'bf16': torch.bfloat16}
SOURCE = launcher.source_text(cuda.FUSED_SOURCE)


def _assert_clean(compiled, dtype):
    assert compiled.ok, compiled.log
    assert not nvrtc.warnings_in(compiled.log), compiled.log
    found = nvrtc.resources(compiled.log)
    assert sorted(found) == sorted(fused_planning.entry_points(dtype))  # not the op's
    dirty = {name: r for name, r in found.items() if not r.clean}
    assert not dirty, f'spills, local memory or a stack frame: {dirty}'
    assert all(0 < r.registers <= 255 for r in found.values())
    assert compiled.cubin[:4] == b'\x7fELF'


def test_the_assembled_source_has_no_include_left():
    assert '#include' not in SOURCE
    assert 'MMREDNET_NO_OP_ENTRIES' in SOURCE and 'half_to_float' in SOURCE


@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('arch', nvrtc.ARCHS)
def test_fused_kernels_compile_as_the_launcher_does_without_spills(arch, dtype):
    compiled = nvrtc.compile_source(SOURCE, nvrtc.launcher_options(DTYPES[dtype], arch))
    _assert_clean(compiled, DTYPES[dtype])


@pytest.mark.skipif(importlib.util.find_spec('cupy') is None,
                    reason='CuPy is not installed (pip install "mmrednet[tests]" installs it)')
@pytest.mark.parametrize('dtype', DTYPES, ids=str)
@pytest.mark.parametrize('arch', nvrtc.ARCHS)
def test_fused_kernels_compile_through_cupys_compiler_without_spills(arch, dtype):
    options = (*cuda.compile_options(DTYPES[dtype]), nvrtc.PTXAS_VERBOSE)
    compiled = nvrtc.compile_with_cupy(SOURCE, options, arch)
    _assert_clean(compiled, DTYPES[dtype])
    assert f"for 'sm_{arch}'" in compiled.log
