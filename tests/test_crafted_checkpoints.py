"""Checkpoints crafted to make numpy build what no checkpoint of weights holds.

Every loader that reads mmengine checkpoints (mmengine's ``CheckpointLoader``
after ``import mmrednet``, the official-weights converter, the ``paddleclas://``
cache) must refuse them as torch's own ``weights_only`` load does, never crash;
plain numeric numpy values still load, as numpy objects.
"""
import os
import pickle
import subprocess
import sys
import threading
from collections import OrderedDict

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader
from numpy._core import multiarray

import mmrednet  # noqa: F401  (scopes mmengine's checkpoint loaders)

from .det_helpers import ROOT


class _Reduce:
    """Pickled as ``reduce[0](*reduce[1])``, then ``__setstate__(reduce[2])`` if given."""

    def __init__(self, *reduce):
        self.reduce = reduce

    def __reduce__(self):
        return self.reduce


def _array(shape, dtype, data):
    """What numpy's pickle of an array holds, with any shape, dtype and bytes."""
    return _Reduce(multiarray._reconstruct, (np.ndarray, (0, ), b'b'),
                   (1, shape, dtype, False, data))


def _dtype(code, state):
    return _Reduce(np.dtype, (code, False, True), state)


# A structured dtype with an object field whose flags (0) say it holds no
# objects: numpy reads the raw bytes as pointers when the value is printed.
_OBJECT_FIELD = _dtype('V16', (3, '|', None, ('a', 'b'), {'a': (np.dtype('O'), 0),
                                                          'b': (np.dtype('f8'), 8)}, 16, 1, 0))
_SHARED = b'\0' * 65536
_SHARED_STR = _SHARED.decode('latin1')
_CRAFTED = {  # name: (value, why it is refused)
    'object-field': (_array((2, ), _OBJECT_FIELD, b'\x41' * 32), "dtype 'V16'"),
    # A float dtype whose state gives it a subarray (its kind stays 'f').
    'float-subarray': (_array((2, ), _dtype('f4', (3, '<', (np.dtype('f4'), (3, )), None, None,
                                                   -1, -1, 0)), b'\0' * 24), 'dtype state'),
    # A float dtype whose state flags say it holds Python objects.
    'float-object-flags': (_array((2, ), _dtype('f8', (3, '<', None, None, None, -1, -1, 63)),
                                  b'\x41' * 16), 'dtype state'),
    'object-array': (np.array([1.5, None], dtype=object), "dtype 'O8'"),
    'object-scalar': (_Reduce(multiarray.scalar, (np.dtype('O'), b'\x41' * 8)), "dtype 'O8'"),
    # numpy.ndarray called directly: an uninitialised 8 GiB array from a few bytes.
    'ndarray-called': (_Reduce(np.ndarray, ((1 << 30, ), np.dtype('f8'))),
                       'numpy.ndarray is allowed only as the argument of _reconstruct'),
    'structured': (np.zeros(2, dtype=[('a', 'f4'), ('b', 'f4')]), "dtype 'V8'"),
    'unicode': (np.array(['a', 'b']), "dtype 'U1'"),
    # One memoized 64 KiB string as the data of 1000 arrays: 64 MiB from a 100 KiB file.
    'shared-data': ([_array((16384, ), np.dtype('f4'), _SHARED) for _ in range(1000)],
                    'made of the bytes of another'),
    # The same with Python 2's str data (latin1), which is encoded afresh for each array.
    'shared-str-data': ([_array((16384, ), np.dtype('f4'), _SHARED_STR) for _ in range(1000)],
                        'made of the bytes of another'),
    # numpy's dtype classes are not globals a checkpoint may name.
    'dtype-class': (np.dtypes.ObjectDType, 'Unsupported global'),
}

# Loads each file in a fresh process through every loader, and prints what it got.
_LOAD_EVERY_WAY = '''
import os, pickle, sys, torch
import mmrednet
from mmengine.runner import CheckpointLoader
from mmrednet.converters import load_source
from mmrednet.converters.paddleclas_scheme import PaddleClasCheckpointError, paddleclas_state_dict
for path in sys.argv[1:]:
    name = os.path.basename(path)
    try:
        torch.load(path)
        print(name, 'torch.load', 'loaded')
    except pickle.UnpicklingError:
        print(name, 'torch.load', 'refused')
    for way, load in [('CheckpointLoader', CheckpointLoader.load_checkpoint),
                      ('load_source', load_source)]:
        try:
            print(name, way, 'loaded', repr(load(path))[:50], flush=True)
        except (pickle.UnpicklingError, RuntimeError) as err:
            print(name, way, 'refused', ' '.join(str(err).split()), flush=True)
    mirror = os.path.join(os.path.dirname(path), name + '.mirror')
    os.makedirs(mirror)
    os.rename(path, os.path.join(mirror, 'RedNet26_pretrained.pdparams'))
    os.environ['MMREDNET_PADDLECLAS_URL'] = mirror
    try:
        print(name, 'paddleclas', 'loaded', repr(paddleclas_state_dict('paddleclas://RedNet26')))
    except PaddleClasCheckpointError as err:
        print(name, 'paddleclas', 'refused', ' '.join(str(err).split()))
'''


def test_crafted_numpy_values_are_refused_by_every_loader(tmp_path):
    """A crash (a segfault on main for 'object-field') fails the subprocess: no output."""
    paths = []
    for name, (value, _) in _CRAFTED.items():
        paths.append(tmp_path / name)
        torch.save({'meta': {'value': value}, 'state_dict': {'w': torch.zeros(1)}}, paths[-1])
    out = subprocess.run([sys.executable, '-c', _LOAD_EVERY_WAY, *map(str, paths)],
                         check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, f'exit code {out.returncode}\n{out.stdout}\n{out.stderr[-3000:]}'
    outcomes = [line.split(' ', 3) for line in out.stdout.splitlines()
                if line.split(' ', 1)[0] in _CRAFTED]  # not mmengine's log lines
    assert len(outcomes) == 4 * len(_CRAFTED), out.stdout
    for name, way, outcome, *detail in outcomes:
        assert outcome == 'refused', (name, way, outcome, detail)
        why = _CRAFTED[name][1]
        # Our refusals are said in the first line (the converter shows only that); torch's
        # own in mmengine's loader.
        if way == 'CheckpointLoader' or (way != 'torch.load' and why != 'Unsupported global'):
            assert why in detail[0], (name, way, detail)


def _hub_with_numpy():
    buffer = HistoryBuffer()
    for value in (0.5, 2, np.float64(1.25)):  # np.float64 is a float
        buffer.update(value)
    return buffer


def test_plain_numpy_values_load_as_numpy(tmp_path):
    shared = np.arange(6, dtype='f4').reshape(2, 3)
    metadata = OrderedDict(w=torch.ones(2))
    metadata._metadata = {'': {'version': np.int64(2), 'shape': np.array([2])}}
    values = {f'{dtype}': np.arange(5).astype(dtype)
              for dtype in ('?', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8')}
    values.update({'big-endian': np.arange(3, dtype='>i4'),
                   'fortran': np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                   'zero-d': np.array(2.5), 'empty': np.zeros((0, 3), 'f4'),
                   'scalars': (np.float32(0.5), np.int64(-3), np.bool_(True), np.uint8(7)),
                   'one-byte arrays': [np.array([True]), np.array([True])],
                   'dtype': np.dtype('>f8'),
                   'nested': {'tuple': (shared, [shared, {'again': shared}])},
                   'history': _hub_with_numpy(), 'state': metadata})
    path = tmp_path / 'plain.pth'
    torch.save({'meta': values, 'state_dict': {'w': torch.zeros(1)}}, path)

    loaded = CheckpointLoader.load_checkpoint(str(path))['meta']
    for key in [k for k in values if isinstance(values[k], np.ndarray)]:
        array = loaded[key]
        assert type(array) is np.ndarray and array.dtype == values[key].dtype.newbyteorder('=')
        assert array.dtype.isnative and array.flags.writeable, key
        np.testing.assert_array_equal(array, values[key])
    assert loaded['fortran'].flags.f_contiguous
    for got, want in zip(loaded['scalars'], values['scalars'], strict=True):
        assert type(got) is type(want) and got == want
    assert loaded['dtype'] == np.dtype('>f8') and type(loaded['dtype']) is type(np.dtype('f8'))
    first, second = loaded['one-byte arrays']
    assert first is not second and first.tolist() == second.tolist() == [True]
    nested = loaded['nested']['tuple']
    assert type(nested) is tuple and nested[0] is nested[1][0] is nested[1][1]['again']
    np.testing.assert_array_equal(nested[0], shared)
    history = loaded['history']
    assert type(history._log_history) is np.ndarray and history.mean() == pytest.approx(
        _hub_with_numpy().mean())
    assert loaded['state']._metadata['']['version'] == 2
    assert type(loaded['state']._metadata['']['shape']) is np.ndarray


@pytest.fixture
def numpy_checkpoint(tmp_path):
    path = tmp_path / 'hub.pth'
    torch.save({'meta': {'hist': np.arange(3)}, 'message_hub': {'b': _hub_with_numpy()}}, path)
    return path


@pytest.fixture
def users_list():
    """torch's process-wide allow-list, as it was after the test, whatever it did."""
    before = torch.serialization.get_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(before)


def _hold_the_load(monkeypatch, inside):
    """Make mmengine's loaders run ``inside()`` when they call torch.load."""
    real_load = torch.load

    def load(*args, **kwargs):
        inside()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', load)
    return real_load


def test_a_load_does_not_widen_other_threads_loads(numpy_checkpoint, monkeypatch, users_list):
    entered, release, results = threading.Event(), threading.Event(), {}

    def wait():
        entered.set()
        assert release.wait(60)

    real_load = _hold_the_load(monkeypatch, wait)
    worker = threading.Thread(target=lambda: results.update(
        checkpoint=CheckpointLoader.load_checkpoint(str(numpy_checkpoint))))
    worker.start()
    try:
        assert entered.wait(60)
        with pytest.raises(pickle.UnpicklingError):  # torch's own list, as in any process
            real_load(numpy_checkpoint)
    finally:
        release.set()
        worker.join(60)
    assert results['checkpoint']['meta']['hist'].tolist() == [0, 1, 2]


def test_what_the_user_allows_during_a_load_stays_allowed(numpy_checkpoint, monkeypatch,
                                                          users_list):
    _hold_the_load(monkeypatch, lambda: torch.serialization.add_safe_globals(
        [HistoryBuffer, np.ndarray]))
    checkpoint = CheckpointLoader.load_checkpoint(str(numpy_checkpoint))
    assert checkpoint['meta']['hist'].tolist() == [0, 1, 2]
    allowed = torch.serialization.get_safe_globals()
    assert HistoryBuffer in allowed and np.ndarray in allowed


def test_importing_mmrednet_changes_nothing_in_torch(tmp_path):
    """The lookup is extended by the first scoped load, not on import; torch's own before."""
    code = ('import torch._weights_only_unpickler as u; own = u._get_user_allowed_globals; '
            'import mmrednet; print(u._get_user_allowed_globals is own)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=dict(os.environ))
    assert out.stdout.strip() == 'True', out.stderr
