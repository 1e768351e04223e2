"""An installed wheel (not only a source checkout) has the op library and the CUDA sources
(and not what only the tests of a checkout use)."""
import os
import shutil
import subprocess
import sys
import zipfile

from .det_helpers import ROOT


def test_wheel_ships_the_op_library_and_the_cuda_kernel_sources(tmp_path):
    source = tmp_path / 'src'
    source.mkdir()
    for name in ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), source)
    for folder in ('mmrednet', 'kernels'):
        shutil.copytree(os.path.join(ROOT, folder), source / folder,
                        ignore=shutil.ignore_patterns('__pycache__', '*.so'))
    env = {k: v for k, v in os.environ.items() if k != 'MMREDNET_WITH_EXT'}  # with the library
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp_path / 'dist'), str(source)], check=True, env=env,
                   capture_output=True)
    (wheel, ) = (tmp_path / 'dist').glob('mmrednet-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {name.split('/', 2)[-1] for name in names
                   if name.startswith('mmrednet/kernels/')}
        archive.extractall(tmp_path / 'site')
    # What runs: the kernels and the baseline the CUDA check times; not the host emulation.
    assert shipped == {'involution_cuda.cu', 'involution_cuda_baseline.cu',
                       'involution_fused_cuda.cu'}
    assert 'mmrednet/_C.so' in names

    # Imported from the unpacked wheel: the op library loads and runs, and the CUDA
    # launcher reads the shipped sources.
    code = ('import torch; from mmrednet.ops import cuda, op_library_path, library_version; '
            'x = torch.ones(1, 2, 3, 3); w = torch.ones(1, 1, 1, 1, 3, 3); '
            'print(cuda.SOURCE, op_library_path(), library_version(), '
            'torch.ops.mmrednet.involution(x, w, [1, 1], [0, 0], [1, 1]).sum().item())')
    found = subprocess.run(
        [sys.executable, '-c', code], check=True, capture_output=True, text=True, cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(tmp_path / 'site'))).stdout.split()
    package = tmp_path / 'site' / 'mmrednet'
    import mmrednet
    assert found == [str(package / 'kernels' / 'involution_cuda.cu'), str(package / '_C.so'),
                     mmrednet.__version__, '18.0']
