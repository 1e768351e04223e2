"""Read PaddleClas ``.pdparams`` RedNet weights without Paddle (SPEC §5).

``paddle.save(layer.state_dict(), path)`` (Paddle 2.x) writes a Python pickle,
protocol 4 by default, of ``{structured name: numpy.ndarray}`` plus one entry
``'StructuredToParameterName@@'`` (structured name -> parameter name such as
``conv2d_0.w_0``). A pickle can name any importable callable, so the file is
read by :class:`NumpyArrayUnpickler`, which resolves exactly the globals that
numpy's own pickles of plain arrays name and refuses every other one before
anything is called.

PaddleClas's RedNet keeps the official module names (SPEC §3); its keys
differ from the official mmcls checkpoints in three ways, which
:func:`paddle_to_official` undoes: BN statistics are ``_mean``/``_variance``
(no ``num_batches_tracked``), the classifier is ``fc.*`` with the weight stored
``[in, out]``, and there is no ``backbone.`` prefix.
"""
import pickle
import re
from typing import BinaryIO, Dict

import numpy as np
import torch
from numpy._core import multiarray
from torch import Tensor

NAME_TABLE_KEY = 'StructuredToParameterName@@'

# Everything numpy's pickles of plain (non-object) arrays name, protocols 2-4:
# ``ndarray.__reduce__`` gives ``_reconstruct(ndarray, (0,), b'b')`` and a
# ``__setstate__`` tuple whose dtype reduces to ``dtype(str, align, copy)``.
# numpy 1.x (Paddle 2.x, 2021) spells the module ``numpy.core.multiarray``,
# numpy 2.x ``numpy._core.multiarray``: the same function. Not allowed, because
# a state dict never needs them: ``numpy.core.multiarray.scalar`` (numpy scalar
# objects; Paddle stores ``Tensor.numpy()``, an ndarray even for 0-d tensors)
# and ``numpy.core.numeric._frombuffer`` (protocol 5 buffers; Paddle writes <= 4).
_ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): multiarray._reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): multiarray._reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}
_BN_STAT = re.compile(r'^(?P<bn>.+)\.(?P<stat>_mean|_variance)$')


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle names a global that is not numpy's array reconstruction."""


class NumpyArrayUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that builds numpy arrays, dtypes and builtins only.

    Args:
        file (BinaryIO): The open pickle.
        path (str): The file's name, for error messages.
    """

    def __init__(self, file: BinaryIO, path: str) -> None:
        # latin1: what numpy needs for arrays pickled by Python 2 (SPEC §5).
        super().__init__(file, encoding='latin1')
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ', '.join(sorted({f'{m}.{n}' for m, n in _ALLOWED_GLOBALS}))
            raise RefusedPickleError(
                f'{self.path}: refusing to unpickle the global {module}.{name}: a Paddle '
                f'state dict holds numpy arrays only (allowed globals: {allowed}). Nothing '
                'in the file was executed.') from None

    def persistent_load(self, pid):
        raise RefusedPickleError(f'{self.path}: refusing a persistent id ({pid!r}): not '
                                 'part of a Paddle state dict')


def is_pickle(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a pickle of protocol 2 or later."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_pdparams(path: str) -> Dict[str, np.ndarray]:
    """The arrays of a ``paddle.save``-d state dict, without its name table.

    Args:
        path (str): A ``.pdparams`` file. It is only read.

    Returns:
        dict[str, np.ndarray]: Structured name -> array, in file order.

    Raises:
        RefusedPickleError: The pickle names anything but numpy's array globals.
        ValueError: A truncated or corrupt file, or not a state dict of arrays.
    """
    with open(path, 'rb') as f:
        try:
            obj = NumpyArrayUnpickler(f, path).load()
        except RefusedPickleError:
            raise
        except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError,
                KeyError, AttributeError, MemoryError) as err:
            raise ValueError(f'{path}: truncated or corrupt .pdparams (the pickle stops or '
                             f'breaks: {type(err).__name__}: {err})') from err
        if f.read(1):
            raise ValueError(f'{path}: corrupt .pdparams: bytes follow the end of the pickle')
    if not isinstance(obj, dict):
        raise ValueError(f'{path}: not a Paddle state dict: the pickle holds a '
                         f'{type(obj).__name__}, not a dict of arrays')
    state = {k: v for k, v in obj.items() if k != NAME_TABLE_KEY}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray) \
                or value.dtype.kind not in 'biuf':
            raise ValueError(f'{path}: not a Paddle state dict: entry {key!r} is a '
                             f'{getattr(value, "dtype", type(value).__name__)}, not a numeric '
                             'array')
    if not state:
        raise ValueError(f'{path}: the Paddle state dict is empty')
    return state


def paddle_to_official(state: Dict[str, np.ndarray]) -> Dict[str, Tensor]:
    """PaddleClas RedNet keys -> the official mmcls 0.x ones (``backbone.*``, ``head.fc.*``).

    ``<bn>._mean``/``._variance`` become ``running_mean``/``running_var`` plus a
    zero ``num_batches_tracked`` (PyTorch's BN has it; eval ignores it),
    ``fc.weight`` ``[in, out]`` becomes ``head.fc.weight`` ``[out, in]``, and every
    other key gets the ``backbone.`` prefix; keys that are not RedNet's are left
    for :func:`~mmrednet.converters.convert_state_dict` to report.

    Args:
        state (dict[str, np.ndarray]): From :func:`load_pdparams`.

    Returns:
        dict[str, Tensor]: A state dict in the official ImageNet layout.
    """
    out: Dict[str, Tensor] = {}
    for key, value in state.items():
        tensor = torch.from_numpy(np.array(value, copy=True))
        if key in ('fc.weight', 'fc.bias'):
            if key == 'fc.weight':
                if tensor.dim() != 2:
                    raise ValueError(f'fc.weight has shape {tuple(tensor.shape)}; a Paddle '
                                     'Linear weight is 2-D [in, out]')
                tensor = tensor.t().contiguous()
            out['head.' + key] = tensor
            continue
        stat = _BN_STAT.match(key)
        if stat:
            name = 'running_mean' if stat['stat'] == '_mean' else 'running_var'
            out[f'backbone.{stat["bn"]}.{name}'] = tensor
            if stat['stat'] == '_mean':
                out[f'backbone.{stat["bn"]}.num_batches_tracked'] = torch.tensor(0)
            continue
        out['backbone.' + key] = tensor
    return out
