"""Builds the optional CPU extension ``mmrednet._ext``; all metadata is in setup.cfg.

Set ``MMREDNET_WITH_EXT=0`` to skip it (e.g. no compiler): the portable PyTorch
path then serves the CPU.
"""
import os

from setuptools import setup


def cpu_extension():
    if os.environ.get('MMREDNET_WITH_EXT', '1') == '0':
        return {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    flags = ['-O3', '-std=c++20']  # templated lambdas
    if 'OpenMP' in __import__('torch').__config__.parallel_info():
        # Compile the pragmas against the OpenMP runtime torch already loaded.
        flags += ['-fopenmp', '-DAT_PARALLEL_OPENMP=1']
    ext = CppExtension('mmrednet._ext', ['kernels/involution_cpu.cpp'],
                       extra_compile_args=flags)
    return dict(ext_modules=[ext], cmdclass={'build_ext': BuildExtension})


setup(**cpu_extension())
