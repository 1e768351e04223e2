"""Let mmengine's checkpoint loading read mmengine checkpoints under ``weights_only=True``.

mmengine 0.10 checkpoints (``resume``, ``load_from``) hold a message hub with
``HistoryBuffer`` objects and numpy values. torch >= 2.6 unpickles with an
allow-list, so loading them fails. Instead of switching the safety off, the
loads that read such files get exactly the globals mmengine writes, for the
time of the load: :func:`allow_mmengine_checkpoints` re-registers mmengine's
own ``CheckpointLoader`` schemes (the local file of ``resume``, ``load_from``
and ``Pretrained``, and the download schemes) so that each runs inside
:func:`mmengine_checkpoint_globals`. torch's process-wide allow-list stays as
torch (or the user) has it: any other ``torch.load`` refuses these globals.

``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'min')``; ``getattr`` itself would open the door to
arbitrary code, so it is replaced by a resolver that returns only those
registered methods.
"""
import functools
import pickle
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from numpy._core import multiarray

# mmengine registers these when the first HistoryBuffer is made, which a
# process that only loads a checkpoint (inference, tools) has not done yet.
_DEFAULT_STATISTICS = ('min', 'max', 'mean', 'current')
_MMENGINE_LOADERS = 'mmengine.runner.checkpoint'


def _history_buffer_method(owner, name: str):
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``."""
    if owner is HistoryBuffer and (name in _DEFAULT_STATISTICS
                                   or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'refusing to unpickle getattr({owner!r}, {name!r}): only the '
                                 'statistics methods of mmengine HistoryBuffer are allowed')


def _mmengine_globals() -> list:
    dtype_classes = [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    # Checkpoints written under numpy 1.x name the helpers ``numpy.core.*``.
    legacy = [(multiarray.scalar, 'numpy.core.multiarray.scalar'),
              (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct')]
    return [HistoryBuffer, (_history_buffer_method, 'builtins.getattr'), np.ndarray, np.dtype,
            multiarray.scalar, multiarray._reconstruct, *dtype_classes, *legacy]


_lock = threading.Lock()
_scope = dict(depth=0, context=None)


@contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Allow what mmengine checkpoints contain in ``torch.load(weights_only=True)``, inside only.

    Re-entrant and thread-safe. Only the globals not on torch's list already
    are added, and on leaving the outermost one only those are removed: the
    list is then what it was, the user's own additions included.
    """
    with _lock:
        if not _scope['depth']:
            present = set(torch.serialization.get_safe_globals())
            _scope['context'] = torch.serialization.safe_globals(
                [g for g in _mmengine_globals() if g not in present])
            _scope['context'].__enter__()
        _scope['depth'] += 1
    try:
        yield
    finally:
        with _lock:
            _scope['depth'] -= 1
            if not _scope['depth']:
                _scope['context'].__exit__(None, None, None)


def _scoped(loader: Callable) -> Callable:

    @functools.wraps(loader)  # mmengine logs the loader's name
    def load(*args, **kwargs):
        with mmengine_checkpoint_globals():
            return loader(*args, **kwargs)

    load.mmrednet_scoped = True
    return load


def allow_mmengine_checkpoints() -> None:
    """Run mmengine's own checkpoint loaders inside :func:`mmengine_checkpoint_globals`.

    Every ``CheckpointLoader`` scheme that mmengine defines (they call
    ``torch.load``) is registered again, wrapped; schemes of other packages are
    left alone. Idempotent.
    """
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if loader.__module__ == _MMENGINE_LOADERS and not getattr(loader, 'mmrednet_scoped',
                                                                  False):
            CheckpointLoader.register_scheme(prefix, _scoped(loader), force=True)
