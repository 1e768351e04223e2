"""Builds the optional CPU extension ``mmrednet._ext`` and ships the CUDA sources.

All metadata is in setup.cfg. Set ``MMREDNET_WITH_EXT=0`` to skip the
extension (e.g. no compiler): the portable PyTorch path then serves the CPU.
"""
import os

from setuptools import find_packages, setup


def cpu_extension():
    if os.environ.get('MMREDNET_WITH_EXT', '1') == '0':
        return {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension

    # Fused multiply-adds where the instruction set has them (ISO C++ mode turns
    # contraction off).
    flags = ['-O3', '-std=c++20', '-ffp-contract=fast']
    if 'OpenMP' in __import__('torch').__config__.parallel_info():
        # Compile the pragmas against the OpenMP runtime torch already loaded.
        flags += ['-fopenmp', '-DAT_PARALLEL_OPENMP=1']
    # The binding, and the kernels compiled once per instruction set (picked at run time).
    sources = [f'kernels/involution_cpu{part}.cpp'
               for part in ('', '_avx512', '_avx2', '_baseline')]
    ext = CppExtension('mmrednet._ext', sources, extra_compile_args=flags,
                       depends=['kernels/involution_cpu.h', 'kernels/involution_cpu_kernels.h'])
    return dict(ext_modules=[ext], cmdclass={'build_ext': BuildExtension})


# The CUDA kernels are compiled at run time (CuPy/NVRTC), so their sources are
# package data: ``kernels/`` of the checkout becomes ``mmrednet/kernels`` of an
# installed wheel, with the host emulation that ``mmrednet.testing`` builds.
setup(packages=find_packages(include=['mmrednet', 'mmrednet.*']) + ['mmrednet.kernels'],
      package_dir={'mmrednet.kernels': 'kernels'},
      package_data={'mmrednet.kernels': ['*.cu', 'emulation/*.cpp', 'emulation/*.h']},
      **cpu_extension())
