"""The op library ``mmrednet/_C.so``: ops defined in C++, loadable without Python.

As torchvision's ops: schemas and CPU kernels in C++ (``TORCH_LIBRARY``), fake
kernels and autograd from Python. A deployed ``.pt2`` calls the ops in a C++
program with no Python in the process, so the library must need no Python
symbol; without it (``MMREDNET_WITH_EXT=0``) the same ops are defined from Python.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import mmrednet
from mmrednet.ops import cpu, library_version, native, op_library_path
from mmrednet.ops.schemas import SCHEMAS

from .det_helpers import ROOT

needs_library = pytest.mark.skipif(not native.LOADED, reason='the op library was not built')


def test_schemas_are_the_ones_spelled_in_schemas_py():
    for name, schema in SCHEMAS.items():
        assert str(getattr(torch.ops.mmrednet, name).default._schema) == f'mmrednet::{schema}'


@needs_library
def test_ops_and_cpu_kernels_are_defined_in_cpp():
    for name in SCHEMAS:
        # Defined by the library's TORCH_LIBRARY, not by a Python torch.library.Library.
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f'mmrednet::{name}', 'CPU')
        assert 'involution_cpu.cpp' in torch._C._dispatch_dump(f'mmrednet::{name}')
    # Fakes and autograd come from Python on the same ops.
    for key in ('Meta', 'Autograd', 'CompositeExplicitAutograd'):
        assert torch._C._dispatch_has_kernel_for_dispatch_key('mmrednet::involution', key), key


@needs_library
def test_op_library_path_and_version():
    path = op_library_path()
    assert os.path.isabs(path) and os.path.isfile(path)
    assert os.path.samefile(path, os.path.join(os.path.dirname(mmrednet.__file__), '_C.so'))
    assert library_version() == mmrednet.__version__
    torch.ops.load_library(path)  # loading it again (as a deployment tool does) is harmless
    assert cpu.isa() in cpu.supported_isas()


def test_op_library_path_says_why_when_there_is_none(monkeypatch):
    monkeypatch.setattr(native, 'LOADED', False)
    monkeypatch.setenv('MMREDNET_WITH_EXT', '0')
    with pytest.raises(RuntimeError, match='no op library .MMREDNET_WITH_EXT=0'):
        op_library_path()
    with pytest.raises(RuntimeError, match='no op library'):
        library_version()


@needs_library
@pytest.mark.skipif(shutil.which('nm') is None, reason='needs binutils nm')
def test_op_library_needs_no_python_symbol():
    undefined = subprocess.run(['nm', '-D', '--undefined-only', op_library_path()], check=True,
                               capture_output=True, text=True).stdout.split()
    assert any(name.startswith('_ZN') for name in undefined)  # nm did read the symbols
    assert not [name for name in undefined if name.startswith(('Py', '_Py', 'PyInit'))]
    linked = subprocess.run(['ldd', op_library_path()], check=False, capture_output=True,
                            text=True).stdout
    assert 'libtorch_python' not in linked


@needs_library
@pytest.mark.skipif(shutil.which('cc') is None, reason='needs a C compiler')
def test_a_program_without_python_loads_the_op_library(tmp_path):
    # A C program (no Python in the process) dlopens libtorch and the library with every
    # symbol resolved now: a Python symbol the library needed would fail here.
    program = tmp_path / 'load.c'
    program.write_text(r'''
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL)) { printf("%s\n", dlerror()); return 1; }
  }
  printf("loaded\n");
  return 0;
}
''')
    subprocess.run(['cc', str(program), '-o', str(tmp_path / 'load'), '-ldl'], check=True)
    torch_lib = os.path.join(os.path.dirname(torch.__file__), 'lib')
    libraries = [os.path.join(torch_lib, f'lib{name}.so') for name in ('c10', 'torch_cpu')]
    result = subprocess.run([str(tmp_path / 'load'), *libraries, op_library_path()],
                            capture_output=True, text=True, check=False,
                            env=dict(os.environ, LD_LIBRARY_PATH=torch_lib))
    assert result.returncode == 0 and result.stdout.strip() == 'loaded', result.stdout


def test_without_the_library_the_ops_are_defined_from_python():
    # MMREDNET_WITH_EXT=0: no library loaded; the same ops, checked, with fakes and autograd.
    code = '''
import torch
from mmrednet.ops import cpu, involution, involution_reference
from mmrednet.ops.schemas import SCHEMAS
assert not cpu.AVAILABLE
for name, schema in SCHEMAS.items():
    assert str(getattr(torch.ops.mmrednet, name).default._schema) == 'mmrednet::' + schema
x = torch.randn(2, 8, 7, 6, dtype=torch.float64, requires_grad=True)
w = torch.randn(2, 2, 3, 3, 4, 3, dtype=torch.float64, requires_grad=True)
torch.library.opcheck(torch.ops.mmrednet.involution.default, (x, w, [2, 2], [1, 1], [1, 1]))
assert torch.autograd.gradcheck(lambda a, b: involution(a, b, 2, 1, 1), (x, w))
try:
    torch.ops.mmrednet.involution(x, w[:1], [2, 2], [1, 1], [1, 1])
except ValueError as exc:
    assert 'batch size' in str(exc), exc
else:
    raise AssertionError('no error for a batch mismatch')
print('ok')
'''
    env = dict(os.environ, MMREDNET_WITH_EXT='0',
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=env, cwd=ROOT, check=False)
    assert result.returncode == 0 and result.stdout.strip() == 'ok', result.stderr[-3000:]
