"""Let torch >= 2.6 load mmengine checkpoints with ``weights_only=True``.

mmengine 0.10 checkpoints (``resume``, ``load_from``) hold a message hub with
``HistoryBuffer`` objects and numpy values. torch now unpickles with an
allow-list, so loading fails. Instead of switching the safety off, this adds
exactly the globals mmengine writes. ``HistoryBuffer`` pickles its statistics
methods as ``getattr(HistoryBuffer, 'min')``; ``getattr`` itself would open
the door to arbitrary code, so it is replaced by a resolver that returns only
those registered methods.
"""
import pickle

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from numpy._core import multiarray

# mmengine registers these when the first HistoryBuffer is made, which a
# process that only loads a checkpoint (inference, tools) has not done yet.
_DEFAULT_STATISTICS = ('min', 'max', 'mean', 'current')


def _history_buffer_method(owner, name: str):
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``."""
    if owner is HistoryBuffer and (name in _DEFAULT_STATISTICS
                                   or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f'refusing to unpickle getattr({owner!r}, {name!r}): only the '
                                 'statistics methods of mmengine HistoryBuffer are allowed')


def _numpy_globals():
    dtype_classes = [getattr(np.dtypes, name) for name in np.dtypes.__all__]
    # Checkpoints written under numpy 1.x name the helpers ``numpy.core.*``.
    legacy = [(multiarray.scalar, 'numpy.core.multiarray.scalar'),
              (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct')]
    return [np.ndarray, np.dtype, multiarray.scalar, multiarray._reconstruct, *dtype_classes,
            *legacy]


def allow_mmengine_checkpoints() -> None:
    """Add what mmengine checkpoints contain to torch's ``weights_only`` allow-list."""
    torch.serialization.add_safe_globals([
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        *_numpy_globals(),
    ])
