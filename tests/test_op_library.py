"""The op library ``mmrednet/_C.so``: ops defined in C++, loadable without Python.

As torchvision's ops: schemas and CPU kernels in C++ (``STABLE_TORCH_LIBRARY``,
on torch's stable ABI), fake kernels and autograd from Python. A deployed
``.pt2`` calls the ops in a C++ program with no Python in the process, so the
library must need no Python symbol; it needs only torch's C shim, so that one
build serves several torch releases (checked here in a real torch 2.13 venv);
without it (``MMREDNET_WITH_EXT=0``) the same ops are defined from Python.
"""
import glob
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

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
        # Defined by the library's STABLE_TORCH_LIBRARY, not by a Python torch.library.Library.
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


@needs_library
@pytest.mark.skipif(shutil.which('nm') is None, reason='needs binutils nm')
def test_op_library_needs_only_torchs_c_shim():
    # The stable ABI: nothing of torch's C++ API (whose symbols change between releases),
    # only the C functions aoti_torch_* / torch_* besides libc and libstdc++.
    lines = subprocess.run(['nm', '-D', '--undefined-only', '--demangle', op_library_path()],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    symbols = [line.split(maxsplit=1) for line in lines if line.strip()]
    assert any(name.startswith('operator new') for _, name in symbols)  # nm did read them
    cpp_api = [name for _, name in symbols if re.search(r'\b(at|c10|torch)::', name)]
    assert not cpp_api, f'{len(cpp_api)} symbols of torch\'s C++ API, e.g. {cpp_api[:3]}'
    assert any(name.startswith('aoti_torch_') for _, name in symbols)
    # Any other unversioned C function would come from torch too.
    other = [name for kind, name in symbols
             if kind == 'U' and '@' not in name and '::' not in name and '(' not in name
             and not name.startswith(('aoti_torch_', 'torch_'))]
    assert not other, other


# A torch release other than the one the library is built against (2.14), as a local
# CPU wheel; the venv made from it is cached outside the checkout.
OTHER_TORCH = '2.13.0'
WHEELS = '/opt/wheels'
# What importing torch needs (torch's own requirements), at this venv's versions.
TORCH_DEPS = ('typing-extensions', 'sympy', 'mpmath', 'filelock', 'networkx', 'jinja2',
              'markupsafe', 'fsspec', 'numpy')

CROSS_VERSION_CHECK = r"""
import sys, types, torch
library, ops_dir = sys.argv[1:]
print(torch.__version__)
# The reference implementation, imported without mmrednet (and its mm* dependencies).
package = types.ModuleType('mmrednet_ops')
package.__path__ = [ops_dir]
sys.modules['mmrednet_ops'] = package
from mmrednet_ops.reference import involution_reference

torch.ops.load_library(library)
ops = torch.ops.mmrednet
torch.manual_seed(0)
problems = [  # n, c, groups, (h, w), kernel, stride, padding, dilation, dtype, channels_last
    (2, 8, 2, (9, 7), 3, 1, 1, 1, torch.float64, False),
    (1, 16, 4, (11, 10), 5, 2, 2, 1, torch.float64, True),
    (3, 4, 1, (6, 8), 3, 1, 2, 2, torch.float32, False),
    (2, 32, 2, (8, 8), 7, 1, 3, 1, torch.float32, True),
]
for isa in ops._cpu_supported_isas():
    ops._cpu_set_isa(isa)
    assert ops._cpu_isa() == isa
    for n, c, g, (h, w), k, s, p, d, dtype, channels_last in problems:
        ho, wo = ((size + 2 * p - d * (k - 1) - 1) // s + 1 for size in (h, w))
        x = torch.randn(n, c, h, w, dtype=dtype)
        weight = torch.randn(n, ho, wo, g, k, k, dtype=dtype).permute(0, 3, 4, 5, 1, 2)
        if channels_last:  # a pixel-major kernel: the channels-last kernels
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            weight = weight.contiguous()
        grad_out = torch.randn(n, c, ho, wo, dtype=dtype)
        geometry = ([s, s], [p, p], [d, d])
        xr, wr = x.double().requires_grad_(), weight.double().requires_grad_()
        want = involution_reference(xr, wr, s, p, d)
        want_gx, want_gw = torch.autograd.grad(want, (xr, wr), grad_out.double())
        tol = dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
        for got, ref in ((ops.involution(x, weight, *geometry), want),
                         (ops.involution_grad_input(grad_out, x, weight, *geometry), want_gx),
                         (ops.involution_grad_weight(grad_out, x, weight, *geometry), want_gw)):
            assert got.dtype == dtype, got.dtype
            torch.testing.assert_close(got.double(), ref.detach(), **tol)
try:
    ops.involution(torch.randn(2, 8, 5, 5), torch.randn(1, 2, 3, 3, 5, 5), [1, 1], [1, 1], [1, 1])
except ValueError as exc:
    assert 'weight batch size 1 must equal input batch size 2' in str(exc), exc
else:
    raise AssertionError('no error for a batch mismatch')
print(ops._library_version(), len(ops._cpu_supported_isas()) * len(problems), 'ok')
"""


def _venv_with_torch(version: str) -> Path:
    """A venv with the local CPU wheel of torch ``version``, made once and cached."""
    wheels = sorted(glob.glob(os.path.join(WHEELS, f'torch-{version}+cpu-cp{sys.version_info.major}'
                                                   f'{sys.version_info.minor}-*.whl')))
    if not wheels:
        pytest.skip(f'no CPU wheel of torch {version} for this Python in {WHEELS} (the CI '
                    'image has one); the library was not tried in another torch release')
    cache = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache'))
    venv = cache / 'mmrednet' / 'venvs' / f'torch{version}-cpu'
    python, done = venv / 'bin' / 'python', venv / '.mmrednet-complete'
    from filelock import FileLock  # torch's dependency
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + '.lock'):
        if done.is_file() and done.read_text() == wheels[-1]:
            return python
        shutil.rmtree(venv, ignore_errors=True)  # an interrupted or older one
        start = time.monotonic()
        subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
        deps = [f'{name}=={importlib.metadata.version(name)}' for name in TORCH_DEPS]
        pip = subprocess.run([str(python), '-m', 'pip', 'install', '-q', '--no-deps', wheels[-1],
                              *deps], capture_output=True, text=True, check=False)
        assert pip.returncode == 0, f'could not make {venv}: {pip.stderr[-2000:]}'
        done.write_text(wheels[-1])
        print(f'made {venv} in {time.monotonic() - start:.0f} s')
    return python


@needs_library
def test_the_library_built_for_this_torch_serves_another_release():
    # One build for several torch releases (the stable ABI): the library built against this
    # torch (2.14) loads in torch 2.13 and gives the reference's forward and gradients there.
    python = _venv_with_torch(OTHER_TORCH)
    ops_dir = os.path.dirname(os.path.abspath(native.__file__))  # reference.py's folder
    result = subprocess.run([str(python), '-c', CROSS_VERSION_CHECK, op_library_path(), ops_dir],
                            capture_output=True, text=True, timeout=300, check=False,
                            env={k: v for k, v in os.environ.items() if k != 'PYTHONPATH'})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split()
    assert lines[0].startswith(OTHER_TORCH) and lines[-1] == 'ok', result.stdout
    assert lines[-3] == mmrednet.__version__
