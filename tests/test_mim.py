"""openmim knows mmrednet: in the environment `make install` builds, and from a wheel.

openmim 0.3.9 looks for a package next to its metadata: ``<distribution location>/mmrednet``,
then ``.mim/model-index.yml`` there; it finds configs by file name under that folder and runs
``.mim/tools/train.py`` / ``tools/test.py``. A wheel carries copies of those files. An editable
install (PEP 660, what `make install` does) puts only the metadata in site-packages, so
`make install` links the checkout's package there; these tests run the environment's own
``mim`` on that install, and on a wheel of the sources unpacked as pip installs it.
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


def _env(pythonpath=None):
    """The environment of a subprocess; without ``pythonpath``, the installed packages only."""
    env = dict(os.environ, MMREDNET_WITH_EXT='0', OMP_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    env.pop('PYTHONPATH', None)
    if pythonpath is not None:
        env['PYTHONPATH'] = str(pythonpath)
    return env


def _mim(args, pythonpath, cwd):
    assert osp.exists(MIM), ('openmim is not installed: make install adds it '
                             '(pip install --no-deps openmim==0.3.9, then the mim extra)')
    return subprocess.run([MIM, *args], check=False, env=_env(pythonpath), cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def _listed(stdout):
    return {line.split(':', 1)[1].strip() for line in stdout.splitlines()
            if line.startswith('config id:')}


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
    """A copy of the sources after setuptools' editable build, as `pip install -e .` runs it."""
    checkout = tmp_path_factory.mktemp('mim_editable') / 'checkout'
    checkout.mkdir()
    _copy_sources(checkout)
    subprocess.run([sys.executable, '-c',
                    'from setuptools import build_meta; build_meta.build_editable("dist")'],
                   check=True, cwd=checkout, env=_env(''), capture_output=True)
    return checkout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """This interpreter's environment as `make install` left it: no PYTHONPATH, nothing copied.

    Only meaningful when that environment's mmrednet is this checkout (a fresh clone after
    `make install`, as CI runs it); an environment installed from another checkout is not
    the one these files describe. Its value, None, is the PYTHONPATH of `_mim`: none.
    """
    where = subprocess.run(
        [sys.executable, '-c', 'import os, mmrednet; print(os.path.realpath(mmrednet.__file__))'],
        check=False, env=_env(), cwd=tmp_path_factory.mktemp('where'), capture_output=True,
        text=True)
    assert where.returncode == 0, f'mmrednet is not installed: make install\n{where.stderr}'
    package = osp.dirname(where.stdout.strip())
    if package != osp.realpath(osp.join(ROOT, 'mmrednet')):
        pytest.skip(f'this environment has mmrednet from {package}, not from this checkout '
                    f'({ROOT}): run make install here')


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


@pytest.mark.parametrize('install', ['installed', 'wheel_site'])
def test_mim_search_lists_every_model(install, request, tmp_path):
    result = _mim(['search', 'mmrednet'], request.getfixturevalue(install), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _listed(result.stdout) == set(_model_names())
    # Each model with its published and measured figures (mim lowercases names, not units).
    block = result.stdout.split('config id: rednet26_64xb32-warmup-coslr-130e_imagenet')[1]
    block = block.split('config id:')[0]
    fields = dict(line.split(None, 1) for line in block.splitlines() if len(line.split()) == 2)
    assert fields['parameters(M)'] == '9.23' and fields['measured_flops(G)'] == '1.7'
    assert fields['imagenet-1k/top-1'] == '75.96'
    assert fields['config'].startswith('configs/rednet/rednet26')


@pytest.mark.parametrize('install', ['installed', 'wheel_site'])
@pytest.mark.parametrize('family, prefix', [('retinanet', 'retinanet_'),
                                            ('mask r-cnn', 'mask-rcnn_'), ('fpn', 'fpn_'),
                                            ('rednet', 'rednet')])
def test_mim_search_by_family(install, family, prefix, request, tmp_path):
    result = _mim(['search', 'mmrednet', '--model', family], request.getfixturevalue(install),
                  tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _listed(result.stdout) == {n for n in _model_names() if n.startswith(prefix)}


@pytest.mark.parametrize('install', ['installed', 'wheel_site'])
def test_mim_train_and_test_run_the_packaged_tools(install, request, tmp_path):
    site = request.getfixturevalue(install)
    data = tmp_path / 'shapes'
    make_shapes_imagenet(str(data), (('train', 4), ('val', 2)))
    roots = [f'{loader}.dataset.data_root={data}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    work = tmp_path / 'work'
    # By file name: mim finds the config inside the installed package.
    result = _mim(['train', 'mmrednet', DEMO_CONFIG, '--work-dir', str(work), '--cfg-options',
                   *roots, 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
                   'default_hooks.logger.interval=1'], site, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    # The config of this install: the wheel's copy, or the checkout's own file.
    config = (osp.join(ROOT, 'configs', 'demo', DEMO_CONFIG) if site is None else
              f'{site}/mmrednet/.mim/configs/demo/{DEMO_CONFIG}')
    assert f'will use {osp.realpath(config)} instead' in result.stdout
    assert (work / 'epoch_1.pth').is_file()

    result = _mim(['test', 'mmrednet', DEMO_CONFIG, '--checkpoint', str(work / 'epoch_1.pth'),
                   '--work-dir', str(tmp_path / 'test'), '--cfg-options', *roots],
                  site, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert 'accuracy/top1' in result.stdout + result.stderr
