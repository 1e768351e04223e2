"""An installed wheel (not only a source checkout) finds the CUDA kernel sources."""
import os
import shutil
import subprocess
import sys
import zipfile

from .det_helpers import ROOT


def test_wheel_ships_the_cuda_kernel_sources(tmp_path):
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), source)
    for folder in ('mmrednet', 'kernels'):
        shutil.copytree(os.path.join(ROOT, folder), source / folder,
                        ignore=shutil.ignore_patterns('__pycache__', '*.so'))
    env = dict(os.environ, MMREDNET_WITH_EXT='0')  # the C++ build is not what this checks
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path / 'dist'), str(source)], check=True, env=env,
                   capture_output=True)
    (wheel, ) = (tmp_path / 'dist').glob('mmrednet-*.whl')
    kernels = {p for p in os.listdir(os.path.join(ROOT, 'kernels')) if p.endswith('.cu')}
    kernels |= {f'emulation/{p}' for p in os.listdir(os.path.join(ROOT, 'kernels', 'emulation'))}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.split('/', 2)[-1] for name in archive.namelist()
                   if name.startswith('mmrednet/kernels/')}
        archive.extractall(tmp_path / 'site')
    assert kernels and shipped == kernels

    # Imported from the unpacked wheel, the launcher reads the shipped sources.
    found = subprocess.run(
        [sys.executable, '-c', 'from mmrednet.ops import cuda; print(cuda.SOURCE)'],
        check=True, capture_output=True, text=True, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(tmp_path / 'site'))).stdout.strip()
    assert found == str(tmp_path / 'site' / 'mmrednet' / 'kernels' / 'involution_cuda.cu')
