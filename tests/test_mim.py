"""openmim knows mmrednet, installed from a wheel or editable.

openmim 0.3.9 looks for ``<distribution location>/mmrednet/.mim/model-index.yml`` (then
``mmrednet/model-index.yml``), finds configs by file name under ``mmrednet/`` and runs
``mmrednet/.mim/tools/train.py`` / ``tools/test.py``. setup.py copies those files into
``mmrednet/.mim`` for a wheel and links them to the checkout for an editable install. Both
are built here from a copy of the sources (without the C++ extension, which is not what
this checks) and put on PYTHONPATH, where their metadata comes before any other install's.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from mmrednet.demo import make_shapes_imagenet

from .seg_helpers import ROOT

MIM = osp.join(osp.dirname(sys.executable), 'mim')
SOURCES = ('setup.py', 'setup.cfg', 'pyproject.toml', 'README.md', 'model-index.yml',
           'mmrednet', 'kernels', 'configs', 'tools')
DEMO_CONFIG = 'rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py'


def _model_names():
    with open(osp.join(ROOT, 'model-index.yml')) as f:
        metafiles = yaml.safe_load(f)['Import']
    names = []
    for metafile in metafiles:
        with open(osp.join(ROOT, metafile)) as f:
            names += [m['Name'] for m in yaml.safe_load(f)['Models']]
    return names


def _copy_sources(dest):
    for name in SOURCES:
        source = osp.join(ROOT, name)
        if osp.isdir(source):
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns(
                '__pycache__', '*.so', '.mim', '*.egg-info'))
        else:
            shutil.copy(source, dest / name)


def _env(pythonpath):
    return dict(os.environ, PYTHONPATH=str(pythonpath), MMREDNET_WITH_EXT='0',
                OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')


def _mim(args, pythonpath, cwd):
    assert osp.exists(MIM), ('openmim is not installed: make install adds it '
                             '(pip install --no-deps openmim==0.3.9, then the mim extra)')
    return subprocess.run([MIM, *args], check=False, env=_env(pythonpath), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def wheel_site(tmp_path_factory):
    """A wheel of the sources, unpacked as pip installs it."""
    tmp = tmp_path_factory.mktemp('mim_wheel')
    source = tmp / 'src'
    source.mkdir()
    _copy_sources(source)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp / 'dist'), str(source)], check=True, env=_env(''),
                   capture_output=True)
    (wheel, ) = (tmp / 'dist').glob('mmrednet-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp / 'site')
    return tmp / 'site'


@pytest.fixture(scope='module')
def editable_checkout(tmp_path_factory):
    """A checkout after setuptools' editable build (PEP 660), as `pip install -e .` runs it.

    Such an install records its metadata in site-packages, where openmim 0.3.9 then looks
    for ``mmrednet/``; with the checkout's own metadata (``setup.py egg_info``) first on
    PYTHONPATH, openmim looks in the checkout, as the docs say.
    """
    checkout = tmp_path_factory.mktemp('mim_editable') / 'checkout'
    checkout.mkdir()
    _copy_sources(checkout)
    subprocess.run([sys.executable, '-c',
                    'from setuptools import build_meta; build_meta.build_editable("dist")'],
                   check=True, cwd=checkout, env=_env(''), capture_output=True)
    subprocess.run([sys.executable, 'setup.py', '-q', 'egg_info'], check=True, cwd=checkout,
                   env=_env(''), capture_output=True)
    return checkout


def test_wheel_ships_the_model_index_configs_and_tools(wheel_site):
    mim = wheel_site / 'mmrednet' / '.mim'
    for path in ('model-index.yml', 'configs/rednet/metafile.yml', 'configs/rednet/README.md',
                 'configs/_base_/models/rednet_imagenet.py', f'configs/demo/{DEMO_CONFIG}',
                 'tools/train.py', 'tools/test.py', 'tools/dist_train.sh'):
        assert (mim / path).is_file() and not (mim / path).is_symlink(), path
    configs = {p for p in os.listdir(osp.join(ROOT, 'configs', 'rednet')) if p.endswith('.py')}
    assert {p for p in os.listdir(mim / 'configs' / 'rednet') if p.endswith('.py')} == configs


def test_editable_build_links_to_the_checkout(editable_checkout):
    mim = editable_checkout / 'mmrednet' / '.mim'
    for name in ('model-index.yml', 'configs', 'tools'):
        assert (mim / name).is_symlink()
        assert (mim / name).resolve() == (editable_checkout / name).resolve()


@pytest.mark.parametrize('install', ['wheel_site', 'editable_checkout'])
def test_mim_search_lists_every_model(install, request, tmp_path):
    result = _mim(['search', 'mmrednet'], request.getfixturevalue(install), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    listed = {line.split(':', 1)[1].strip() for line in result.stdout.splitlines()
              if line.startswith('config id:')}
    assert listed == set(_model_names())
    # Each model with its published and measured figures (mim lowercases names, not units).
    block = result.stdout.split('config id: rednet26_64xb32-warmup-coslr-130e_imagenet')[1]
    block = block.split('config id:')[0]
    fields = dict(line.split(None, 1) for line in block.splitlines() if len(line.split()) == 2)
    assert fields['parameters(M)'] == '9.23' and fields['measured_flops(G)'] == '1.7'
    assert fields['imagenet-1k/top-1'] == '75.96'
    assert fields['config'].startswith('configs/rednet/rednet26')


def test_mim_train_and_test_run_the_packaged_tools(wheel_site, tmp_path):
    data = tmp_path / 'shapes'
    make_shapes_imagenet(str(data), (('train', 4), ('val', 2)))
    roots = [f'{loader}.dataset.data_root={data}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work = tmp_path / 'work'
    # By file name: mim finds the config inside the installed package.
    result = _mim(['train', 'mmrednet', DEMO_CONFIG, '--work-dir', str(work), '--cfg-options',
                   *roots, 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
                   'default_hooks.logger.interval=1'], wheel_site, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert f'{wheel_site}/mmrednet/.mim/configs/demo/{DEMO_CONFIG}' in result.stdout
    assert (work / 'epoch_1.pth').is_file()

    result = _mim(['test', 'mmrednet', DEMO_CONFIG, '--checkpoint', str(work / 'epoch_1.pth'),
                   '--work-dir', str(tmp_path / 'test'), '--cfg-options', *roots],
                  wheel_site, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert 'accuracy/top1' in result.stdout + result.stderr
