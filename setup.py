"""Builds the optional op library ``mmrednet/_C.so`` and ships the CUDA sources.

All metadata is in setup.cfg. Set ``MMREDNET_WITH_EXT=0`` to skip the op
library (e.g. no compiler): the ops are then defined from Python and the
portable PyTorch path serves the CPU.
"""
import json
import os
import runpy
import shutil
import sys

from setuptools import find_packages, setup

# What openmim reads from an installed package (``<package>/.mim/``): the model index,
# the configs it points at, and the train/test tools that ``mim train/test`` run.
MIM_FILES = ('model-index.yml', 'configs', 'tools')

# The oldest torch release the op library loads in (major << 56 | minor << 48).
TORCH_TARGET_VERSION = '0x020a000000000000'  # 2.10


def generated_header(folder):
    """Write the op schemas and the package version into a header the library
    compiles, so that they are spelled once (``mmrednet/ops/schemas.py``,
    ``mmrednet/version.py``). Returns the folder to include."""
    schemas = runpy.run_path('mmrednet/ops/schemas.py')['SCHEMAS']
    version = runpy.run_path('mmrednet/version.py')['__version__']
    lines = [f'#define MMREDNET_VERSION {json.dumps(version)}']
    lines += [f'#define MMREDNET_SCHEMA_{name.upper()} {json.dumps(schema)}'
              for name, schema in schemas.items()]
    text = '#pragma once\n' + '\n'.join(lines) + '\n'
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, 'mmrednet_generated.h')
    if not os.path.exists(path) or open(path).read() != text:  # rebuild only on a change
        with open(path, 'w') as f:
            f.write(text)
    return folder


def cpu_extension():
    if os.environ.get('MMREDNET_WITH_EXT', '1') == '0':
        return {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # Fused multiply-adds where the instruction set has them (ISO C++ mode turns
    # contraction off). The binding uses torch's stable ABI only, as torchvision's
    # _C_stable: TORCH_TARGET_VERSION (torch 2.10, the first release whose stable API
    # has everything the binding calls) keeps to the C shims that release has, so one
    # build loads in torch 2.10 and every later release (torch's headers refuse ATen
    # and c10 then).
    flags = ['-O3', '-std=c++20', '-ffp-contract=fast',
             f'-DTORCH_TARGET_VERSION={TORCH_TARGET_VERSION}']
    # The ops and their CPU kernels, compiled once per instruction set (picked at run time).
    sources = [f'kernels/involution_cpu{part}.cpp'
               for part in ('', '_avx512', '_avx2', '_baseline')] + [
                   'kernels/involution_fused_cpu.cpp']
    # A plain shared library, not a Python module: loaded by torch.ops.load_library,
    # and by C++ programs without Python (py_limited_api drops libtorch_python).
    generated = generated_header(os.path.abspath(os.path.join('build', 'generated')))
    ext = CppExtension('mmrednet._C', sources, extra_compile_args=flags, py_limited_api=True,
                       include_dirs=[generated],
                       depends=['kernels/involution_cpu.h', 'kernels/involution_cpu_kernels.h',
                                'kernels/involution_cpu_binding.h', 'kernels/involution_fused.h',
                                'kernels/involution_fused_kernels.h',
                                'mmrednet/ops/schemas.py', 'mmrednet/version.py'])
    build_ext = BuildExtension.with_options(no_python_abi_suffix=True)
    return dict(ext_modules=[ext], cmdclass={'build_ext': build_ext})


def mim_files():
    """Put openmim's files into ``mmrednet/.mim`` and return them as package data.

    An editable install (``develop``/``editable_wheel``) links them to the checkout, so
    that edits show; a wheel or sdist build copies them (as OpenMMLab's setup.py files
    do). Other commands (``build_ext --inplace``, ``egg_info``) leave the folder as it is.
    """
    commands = set(sys.argv[1:])
    mode = ('symlink' if commands & {'develop', 'editable_wheel'} else
            'copy' if commands & {'bdist_wheel', 'sdist'} else None)
    root = os.path.dirname(os.path.abspath(__file__))
    mim = os.path.join(root, 'mmrednet', '.mim')
    if mode is not None:
        os.makedirs(mim, exist_ok=True)
        for name in MIM_FILES:
            source, target = os.path.join(root, name), os.path.join(mim, name)
            if not os.path.exists(source):
                continue  # a wheel built from an sdist: the sdist carries the copies
            if os.path.islink(target) or os.path.isfile(target):
                os.remove(target)
            elif os.path.isdir(target):
                shutil.rmtree(target)
            if mode == 'symlink':
                os.symlink(os.path.relpath(source, mim), target)
            elif os.path.isdir(source):
                shutil.copytree(source, target,
                                ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copyfile(source, target)
    return ['.mim/model-index.yml', '.mim/configs/**/*.py', '.mim/configs/**/*.yml',
            '.mim/configs/**/*.md', '.mim/tools/**/*.py', '.mim/tools/**/*.sh']


# The CUDA kernels are compiled at run time (CuPy/NVRTC), so their sources are
# package data: ``kernels/`` of the checkout becomes ``mmrednet/kernels`` of an
# installed wheel (the kernels and the baseline that check_cuda and the op benchmark
# time). The host emulation (``kernels/emulation``) is for the tests of a checkout only.
setup(packages=find_packages(include=['mmrednet', 'mmrednet.*']) + ['mmrednet.kernels'],
      package_dir={'mmrednet.kernels': 'kernels'},
      package_data={'mmrednet.kernels': ['*.cu'],
                    'mmrednet': mim_files()},
      **cpu_extension())
