"""PaddleClas ``.pdparams`` RedNets through tools/convert_official_checkpoint.py."""
import os
import os.path as osp
import pickle
import pickletools
import stat
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from numpy._core import multiarray

from mmrednet.converters import RefusedPickleError, load_pdparams
from mmrednet.converters.paddle import NAME_TABLE_KEY
from mmrednet.models import RedNet

from .det_helpers import ROOT
from .official_layout import OfficialRedNet, randomize_norms
from .paddle_format import paddle_rednet_state, save_pdparams

IMAGENET_26 = osp.join(ROOT, 'configs', 'rednet', 'rednet26_64xb32-warmup-coslr-130e_imagenet.py')


@pytest.fixture(scope='module')
def paddle_rednet26(tmp_path_factory):
    """A RedNet-26 classifier of our own, saved as PaddleClas's ``RedNet26_pretrained.pdparams``."""
    torch.manual_seed(0)
    backbone = randomize_norms(OfficialRedNet(blocks=(1, 2, 4, 1), stem_kernel=3).eval())
    fc = torch.nn.Linear(2048, 1000)
    state = paddle_rednet_state(backbone, fc)
    path = tmp_path_factory.mktemp('paddle') / 'RedNet26_pretrained.pdparams'
    save_pdparams(state, path)
    return SimpleNamespace(path=path, backbone=backbone, state=state)


def _logits(backbone, state, x):
    """The source weights' logits, computed apart from mmpretrain: pool, then x @ W[in, out] + b."""
    pooled = backbone(x)[-1].mean(dim=(2, 3))
    return pooled @ torch.from_numpy(state['fc.weight']) + torch.from_numpy(state['fc.bias'])


def _load(path):
    return torch.load(path, map_location='cpu', weights_only=True)['state_dict']


def test_written_like_paddle(paddle_rednet26):
    data = paddle_rednet26.path.read_bytes()
    assert data[:2] == b'\x80\x04'  # protocol 4
    assert b'numpy.core.multiarray' in data and b'_reconstruct' in data  # numpy 1.x's names
    assert b'numpy._core' not in data
    assert b'StructuredToParameterName@@' in data and b'batch_norm2d_0.w_1' in data
    state = paddle_rednet26.state
    assert state['fc.weight'].shape == (2048, 1000)
    assert 'stem.2._variance' in state and not any('running' in k for k in state)
    arrays = load_pdparams(str(paddle_rednet26.path))
    assert 'StructuredToParameterName@@' not in arrays
    assert arrays.keys() == state.keys() - {'StructuredToParameterName@@'}
    for key, array in arrays.items():
        np.testing.assert_array_equal(array, state[key])


def test_backbone_computes_what_the_source_computes(paddle_rednet26, tmp_path, convert):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = paddle_rednet26.backbone(x)
    features = {}
    for kernel in (3, 7):
        dst = tmp_path / f'rednet26_stem{kernel}.pth'
        args = [paddle_rednet26.path, dst] + (['--stem-kernel', kernel] if kernel == 7 else [])
        proc = convert(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert 'RedNet-26' in proc.stdout and 'PaddleClas' in proc.stdout
        assert 'dropped head.fc.weight' in proc.stdout
        model = RedNet(26, stem_kernel=kernel).eval()
        model.load_state_dict(_load(dst), strict=True)
        with torch.no_grad():
            features[kernel] = model(x)
        for ours, theirs in zip(features[kernel], expected, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    for k7, k3 in zip(features[7], features[3], strict=True):
        torch.testing.assert_close(k7, k3, rtol=1e-5, atol=1e-5)


def _imagenet_classifier(config=IMAGENET_26):
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model).eval()


def test_with_head_gives_the_imagenet_config_its_logits(paddle_rednet26, tmp_path, convert):
    dst = tmp_path / 'rednet26_in1k.pth'
    proc = convert(paddle_rednet26.path, dst, '--with-head', '--depth', 26)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = _load(dst)
    assert 'head.fc.weight' in state and all(
        k.startswith(('backbone.', 'head.fc.')) for k in state)
    model = _imagenet_classifier()
    model.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.extract_feat(x)[0],
                                   paddle_rednet26.backbone(x)[-1].mean(dim=(2, 3)),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(x, mode='tensor'),
                                   _logits(paddle_rednet26.backbone, paddle_rednet26.state, x),
                                   rtol=1e-4, atol=1e-4)

    # The same weights as an official (mmcls 0.x) PyTorch file convert to the same classifier.
    official = {f'backbone.{k}': v for k, v in paddle_rednet26.backbone.state_dict().items()}
    official['head.fc.weight'] = torch.from_numpy(paddle_rednet26.state['fc.weight'].T.copy())
    official['head.fc.bias'] = torch.from_numpy(paddle_rednet26.state['fc.bias'])
    src = tmp_path / 'rednet26_mmcls.pth'
    meta = dict(mmcls_version='0.10.0', epoch=np.int64(100), best=np.float64(0.5))
    torch.save(dict(state_dict=official, meta=meta), src)
    proc = convert(src, tmp_path / 'from_torch.pth', '--with-head')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Numpy values of the source's meta come out as builtins: a plain weights_only load.
    source_meta = torch.load(tmp_path / 'from_torch.pth', weights_only=True)['meta']['source_meta']
    assert source_meta == dict(mmcls_version='0.10.0', epoch=100, best=0.5, source_format='torch')
    from_torch = _load(tmp_path / 'from_torch.pth')
    assert from_torch.keys() == state.keys()
    for key, value in state.items():
        if not key.endswith('num_batches_tracked'):  # Paddle has none; the converter adds 0
            torch.testing.assert_close(from_torch[key], value, rtol=0, atol=0, msg=key)


def _assert_refused(proc, dst, *phrases):
    assert proc.returncode != 0
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not dst.exists()
    assert not [n for n in os.listdir(dst.parent) if n.endswith('.tmp')]  # no partial output


def test_truncated_and_foreign_files_are_refused(paddle_rednet26, tmp_path, convert):
    before = paddle_rednet26.path.read_bytes()
    dst = tmp_path / 'out' / 'converted.pth'
    dst.parent.mkdir()
    truncated = tmp_path / 'RedNet26_truncated.pdparams'
    truncated.write_bytes(before[:len(before) // 2])
    _assert_refused(convert(truncated, dst), dst, 'truncated or corrupt .pdparams')

    torch_truncated = tmp_path / 'truncated.pth'
    torch.save(dict(state_dict={'a': torch.zeros(100)}), torch_truncated)
    torch_truncated.write_bytes(torch_truncated.read_bytes()[:200])
    _assert_refused(convert(torch_truncated, dst), dst, 'truncated or corrupt PyTorch')

    garbage = tmp_path / 'notes.pdparams'
    garbage.write_bytes(b'hello, not a checkpoint')
    _assert_refused(convert(garbage, dst), dst, 'neither a PyTorch checkpoint')

    # PaddleClas's ResNet-50 has no involution: another model.
    resnet = {'conv1.weight': np.zeros((64, 3, 7, 7), np.float32),
              'bn1._mean': np.zeros(64, np.float32), 'bn1._variance': np.ones(64, np.float32),
              'layer1.0.conv2.weight': np.zeros((64, 64, 3, 3), np.float32),
              'fc.weight': np.zeros((2048, 1000), np.float32),
              'StructuredToParameterName@@': {'conv1.weight': 'conv2d_0.w_0'}}
    other = tmp_path / 'ResNet50_pretrained.pdparams'
    save_pdparams(resnet, other)
    _assert_refused(convert(other, dst), dst, 'not a RedNet checkpoint', 'stem involution')
    assert paddle_rednet26.path.read_bytes() == before  # the input is never touched


def test_wrong_and_undeterminable_depth(paddle_rednet26, tmp_path, convert):
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(paddle_rednet26.path, dst, '--depth', 50), dst,
                    '--depth 50', 'RedNet-26')
    state = {k: v for k, v in paddle_rednet26.state.items() if not k.startswith('layer3.3.')}
    odd = tmp_path / 'odd.pdparams'
    save_pdparams(state, odd)
    _assert_refused(convert(odd, dst), dst, 'cannot tell the RedNet depth', '(1, 2, 3, 1)')


def test_with_head_needs_a_head(paddle_rednet26, tmp_path, convert):
    state = {k: v for k, v in paddle_rednet26.state.items() if not k.startswith('fc.')}
    headless = tmp_path / 'headless.pdparams'
    save_pdparams(state, headless)
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(headless, dst, '--with-head'), dst, 'no classifier')
    assert convert(headless, dst).returncode == 0  # the backbone alone converts


class _RunsACommand:
    """What an attacker puts in a pickle: unpickling calls os.system(command)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path, convert):
    marker = tmp_path / 'ran'
    evil = {'stem.0.conv.weight': np.zeros((32, 3, 3, 3), np.float32),
            'fc.bias': _RunsACommand(f'touch {marker}')}
    path = tmp_path / 'RedNet50_pretrained.pdparams'
    with open(path, 'wb') as f:
        pickle.dump(evil, f, protocol=4)
    assert f'{os.system.__module__}\nsystem'.encode() in pickle.dumps(
        _RunsACommand('x'), protocol=0)  # the file really names os.system
    with pytest.raises(RefusedPickleError) as err:
        load_pdparams(str(path))
    message = str(err.value)
    assert str(path) in message and f'{os.system.__module__}.system' in message
    assert 'Nothing in the file was executed' in message
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(path, dst), dst, f'{os.system.__module__}.system')
    assert not marker.exists()


# --- crafted files: what a pickle can ask numpy for, beyond plain arrays --------------


class _Reduce:
    """Pickled as ``reduce[0](*reduce[1])``, then ``__setstate__(reduce[2])`` if given."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _array_state(shape, dtype, data):
    """What numpy's pickle of an array holds, with any shape, dtype and bytes."""
    return _Reduce(multiarray._reconstruct, (np.ndarray, (0, ), b'b'),
                   (1, shape, dtype, False, data))


def _write_pickle(path, obj):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=4)
    return path


def test_ndarray_is_not_a_constructor_for_the_file(tmp_path, convert):
    # numpy.ndarray called as a function makes an uninitialised 8 GB array
    # out of a file of a few dozen bytes.
    path = _write_pickle(tmp_path / 'tiny.pdparams',
                         {'w': _Reduce(np.ndarray, ((1 << 30, ), np.dtype('f8')))})
    assert path.stat().st_size < 100
    with pytest.raises(RefusedPickleError, match='numpy.ndarray is allowed only as the '
                       'argument of _reconstruct'):
        load_pdparams(str(path))


def test_uninitialised_arrays_of_the_right_shapes_are_refused(paddle_rednet26, tmp_path,
                                                              convert):
    state = {k: _Reduce(np.ndarray, (v.shape, v.dtype)) if isinstance(v, np.ndarray) else v
             for k, v in paddle_rednet26.state.items()}
    path = _write_pickle(tmp_path / 'RedNet26_pretrained.pdparams', state)
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(path, dst), dst, 'numpy.ndarray is allowed only')


def test_a_zero_stride_view_is_refused_in_one_line(tmp_path, convert):
    # Four bytes seen as 2**40 floats: copying it raised MemoryError, a traceback.
    view = _Reduce(np.ndarray, ((1 << 40, ), np.dtype('f4'), b'\0\0\0\0', 0, (0, )))
    path = _write_pickle(tmp_path / 'RedNet50_pretrained.pdparams',
                         {'stem.0.conv.weight': view})
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(path, dst), dst, 'numpy.ndarray is allowed only')


def _tampered_float_dtype():
    """A float32 dtype whose pickled state gives it a (3,) subarray: its kind stays 'f'."""
    return _Reduce(np.dtype, ('f4', False, True),
                   (3, '<', (np.dtype('f4'), (3, )), None, None, -1, -1, 0))


@pytest.mark.parametrize('array,match', [
    (np.zeros(2, dtype=[('a', 'f4'), ('b', 'f4')]), "dtype 'V8'"),  # structured
    (np.array([1.0, 2.0], dtype=object), "dtype 'O8'"),
    (_array_state((2, ), np.dtype(('f4', (2, ))), b'\0' * 16), "dtype 'V8'"),  # subarray
    (_array_state((2, ), _tampered_float_dtype(), b'\0' * 24), 'dtype state'),
], ids=['structured', 'object', 'subarray', 'tampered-state'])
def test_only_plain_numeric_dtypes(array, match, tmp_path, convert):
    path = _write_pickle(tmp_path / 'odd.pdparams', {'stem.0.conv.weight': array})
    with pytest.raises(RefusedPickleError, match=match):
        load_pdparams(str(path))
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(path, dst), dst, 'refusing')


def test_arrays_may_not_claim_more_bytes_than_the_file_holds(tmp_path, convert):
    # One memoized 4 KB string, the data of 1000 arrays: 4 MB from a 4 KB file.
    data = b'\0' * 4096
    state = {f'layer{i}.weight': _array_state((1024, ), np.dtype('f4'), data)
             for i in range(1000)}
    path = _write_pickle(tmp_path / 'shared.pdparams', state)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(RefusedPickleError, match='more bytes than the file holds'):
        load_pdparams(str(path))


@pytest.mark.parametrize('opcode', [pickle.BINBYTES8, b'\x96'], ids=['bytes8', 'bytearray8'])
def test_lengths_past_the_end_are_not_allocated(opcode, tmp_path, convert):
    # A 12-byte file announcing a 1 TB string (or protocol 5's bytearray).
    path = tmp_path / 'huge.pdparams'
    path.write_bytes(b'\x80\x04' + opcode + (1 << 40).to_bytes(8, 'little') + b'.')
    dst = tmp_path / 'converted.pth'
    _assert_refused(convert(path, dst), dst, 'huge.pdparams')


def test_plain_arrays_of_every_numeric_dtype_and_order_load(tmp_path):
    state = {'f2': np.arange(6, dtype='f2').reshape(2, 3), 'f8': np.arange(4.0),
             'i8': np.arange(3), 'u1': np.arange(5, dtype='u1'), 'b1': np.array([True, False]),
             'big-endian': np.arange(3, dtype='>f4'), 'scalar': np.array(2.5, 'f4'),
             'fortran': np.asfortranarray(np.arange(6, dtype='f4').reshape(2, 3)),
             NAME_TABLE_KEY: {'f2': 'x.w_0'}}
    path = tmp_path / 'dtypes.pdparams'
    save_pdparams(state, path)
    arrays = load_pdparams(str(path))
    assert arrays.keys() == state.keys() - {NAME_TABLE_KEY}
    for key, array in arrays.items():
        np.testing.assert_array_equal(array, state[key])
        assert array.dtype.isnative and array.flags.writeable and array.flags.owndata


# Loads each file in a fresh process and prints how it ended and by how much
# the process's peak memory grew (ru_maxrss: KiB on Linux).
_PEAK_MEMORY = '''
import resource, sys
from mmrednet.converters import RefusedPickleError, load_pdparams
for path in sys.argv[1:]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        load_pdparams(path)
        outcome = 'loaded'
    except (RefusedPickleError, ValueError) as err:
        outcome = type(err).__name__
    print(outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
'''


def test_memo_indices_do_not_size_an_allocation(tmp_path):
    """9 to 13 bytes asking the unpickler for a memo table of 256 MiB (index 2**24)."""
    index = 1 << 24
    pickles = {
        'long_binput': b'\x80\x02N' + pickle.LONG_BINPUT + index.to_bytes(4, 'little') + b'.',
        'put': b'\x80\x02N' + pickle.PUT + str(index).encode() + b'\n.',
        # BINPUT's one byte cannot ask for much, but an index out of sequence is refused too.
        'binput': b'\x80\x02N' + pickle.BINPUT + b'\x07.',
    }
    paths = []
    for name, data in pickles.items():
        paths.append(tmp_path / f'{name}.pdparams')
        paths[-1].write_bytes(data)
    out = subprocess.run([sys.executable, '-c', _PEAK_MEMORY, *map(str, paths)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    results = [line.split() for line in out.stdout.splitlines()]
    assert len(results) == len(paths), out.stdout + out.stderr
    for name, (outcome, grown_kib) in zip(pickles, results, strict=True):
        assert outcome == 'RefusedPickleError', (name, outcome)
        assert int(grown_kib) < 32 * 1024, (name, f'peak memory grew by {grown_kib} KiB')
    with pytest.raises(RefusedPickleError, match='memo index 16777216 of LONG_BINPUT'):
        load_pdparams(str(paths[0]))


def test_a_frame_longer_than_the_file_is_refused(tmp_path):
    path = tmp_path / 'frame.pdparams'
    path.write_bytes(b'\x80\x04' + pickle.FRAME + (1 << 40).to_bytes(8, 'little') + b'N.')
    with pytest.raises(RefusedPickleError, match='frame of 1099511627776 bytes'):
        load_pdparams(str(path))


def test_memo_references_of_a_real_file_stay_readable(paddle_rednet26, tmp_path):
    """Protocol 3 numbers its memo with BINPUT/LONG_BINPUT (4 with MEMOIZE): both load."""
    path = tmp_path / 'protocol3.pdparams'
    with open(path, 'wb') as f:
        pickle.dump(paddle_rednet26.state, f, protocol=3)
    puts = {op.name for op, _, _ in pickletools.genops(path.read_bytes())}
    assert {'BINPUT', 'LONG_BINPUT', 'BINGET'} <= puts
    arrays = load_pdparams(str(path))
    for key, array in arrays.items():
        np.testing.assert_array_equal(array, paddle_rednet26.state[key])


def test_the_output_gets_a_new_files_permissions(paddle_rednet26, tmp_path, convert):
    """Not mkstemp's 0o600: other users and containers read the converted weights."""
    dst = tmp_path / 'converted.pth'
    old = os.umask(0o022)
    try:
        assert convert(paddle_rednet26.path, dst).returncode == 0
        assert stat.S_IMODE(dst.stat().st_mode) == 0o644
        os.chmod(dst, 0o640)  # the user's choice survives --force
        assert convert(paddle_rednet26.path, dst, '--force').returncode == 0
        assert stat.S_IMODE(dst.stat().st_mode) == 0o640
    finally:
        os.umask(old)
