"""Read PaddleClas ``.pdparams`` RedNet weights without Paddle (SPEC §5).

``paddle.save(layer.state_dict(), path)`` (Paddle 2.x) writes a Python pickle,
protocol 4 by default, of ``{structured name: numpy.ndarray}`` plus one entry
``'StructuredToParameterName@@'`` (structured name -> parameter name such as
``conv2d_0.w_0``). A pickle can name any importable callable, so the file is
read by :class:`NumpyArrayUnpickler`, which resolves exactly the globals that
numpy's own pickles of plain arrays name, to stand-ins that check their
arguments, and refuses every other one before anything is called; no array
may claim more bytes than the file holds.

PaddleClas's RedNet keeps the official module names (SPEC §3); its keys
differ from the official mmcls checkpoints in three ways, which
:func:`paddle_to_official` undoes: BN statistics are ``_mean``/``_variance``
(no ``num_batches_tracked``), the classifier is ``fc.*`` with the weight stored
``[in, out]``, and there is no ``backbone.`` prefix.
"""
import io
import math
import pickle
import pickletools
import re
from typing import BinaryIO, Dict, Optional

import numpy as np
import torch
from torch import Tensor

NAME_TABLE_KEY = 'StructuredToParameterName@@'

# The globals numpy's pickles of plain arrays name (protocols 2-4):
# ``ndarray.__reduce__`` gives ``_reconstruct(ndarray, (0,), b'b')`` and a
# ``__setstate__`` tuple ``(1, shape, dtype, is_fortran, raw bytes)`` whose
# dtype reduces to ``dtype('f4', False, True)`` with the state
# ``(3, byte order, None, None, None, -1, -1, 0)``. numpy 1.x (Paddle 2.x,
# 2021) spells the module ``numpy.core.multiarray``, numpy 2.x
# ``numpy._core.multiarray``. None of them reaches numpy: each resolves to a
# stand-in below that checks its arguments, and an array is made by
# ``np.frombuffer`` from checked parts only. (Given to numpy, ``ndarray``
# called directly makes an uninitialised array of any size, and a dtype's
# state can mark a float dtype as holding objects or subarrays.)
_RECONSTRUCT = {('numpy.core.multiarray', '_reconstruct'),
                ('numpy._core.multiarray', '_reconstruct')}
_ALLOWED = sorted(f'{m}.{n}' for m, n in _RECONSTRUCT | {('numpy', 'ndarray'), ('numpy', 'dtype')})
# Plain numeric dtypes only: no object, structured, subarray or flexible ones.
_NUMERIC_DTYPE = re.compile(r'^[biuf][1248]$')
_BN_STAT = re.compile(r'^(?P<bn>.+)\.(?P<stat>_mean|_variance)$')


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle names a global, or builds an object, that a numeric state dict has not."""


class _NdarrayArgument:
    """What ``numpy.ndarray`` resolves to: the argument of ``_reconstruct``, never called."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise RefusedPickleError('numpy.ndarray is allowed only as the argument of '
                                 '_reconstruct (a pickled array), not called')


_NDARRAY = _NdarrayArgument()


class _PickledDtype:
    """A plain numeric dtype, as ``dtype(code, align, copy)`` and its state describe it."""

    __slots__ = ('code', 'dtype')

    def __init__(self, code: str) -> None:
        self.code, self.dtype = code, None

    def __setstate__(self, state) -> None:
        if (self.dtype is not None or not isinstance(state, tuple) or len(state) != 8
                or state[0] != 3 or state[1] not in ('<', '>', '|', '=')
                or state[2:] != (None, None, None, -1, -1, 0)):
            raise RefusedPickleError(f'refusing the dtype state {state!r} of {self.code!r}: '
                                     'only plain numeric dtypes are allowed (no object, '
                                     'structured or subarray dtypes)')
        self.dtype = np.dtype(self.code).newbyteorder(state[1] if state[1] != '|' else '=')


class _PickledArray:
    """``_reconstruct``'s result: the array comes from ``__setstate__``'s checked state."""

    __slots__ = ('array', 'budget')

    def __init__(self, budget: list) -> None:
        self.array, self.budget = None, budget

    def __setstate__(self, state) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise RefusedPickleError('refusing an array state that is not numpy\'s '
                                     '(1, shape, dtype, is_fortran, data)')
        version, shape, dtype, fortran, data = state
        if isinstance(data, str):  # Python 2's str, decoded as latin1
            data = data.encode('latin1')
        if (version != 1 or not isinstance(shape, tuple)
                or not all(type(s) is int and s >= 0 for s in shape)
                or not isinstance(dtype, _PickledDtype) or dtype.dtype is None
                or fortran not in (True, False) or not isinstance(data, bytes)):
            raise RefusedPickleError(f'refusing an array state with shape {shape!r} and dtype '
                                     f'{getattr(dtype, "code", dtype)!r}: not a plain numeric '
                                     'array of numpy\'s pickle format')
        nbytes = math.prod(shape) * dtype.dtype.itemsize
        if nbytes != len(data):
            raise RefusedPickleError(f'an array of shape {shape} and dtype {dtype.code} needs '
                                     f'{nbytes} bytes; the file gives {len(data)}')
        # Arrays may share one memoized byte string: together they may not
        # claim more bytes than the file has.
        if nbytes > self.budget[0]:
            raise RefusedPickleError('the arrays claim more bytes than the file holds')
        self.budget[0] -= nbytes
        array = np.frombuffer(data, dtype.dtype).reshape(shape, order='F' if fortran else 'C')
        self.array = array.astype(dtype.dtype.newbyteorder('='), order='K', copy=True)


def _array_of(obj):
    return obj.array if isinstance(obj, _PickledArray) else obj


class NumpyArrayUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` that builds plain numeric numpy arrays and builtins only.

    numpy's array globals resolve to stand-ins that accept only what numpy's
    pickles of plain arrays pass them; :meth:`load` returns the arrays of a
    top-level dict as ``np.ndarray``. Use :func:`load_pdparams`, which also
    refuses protocol-5 opcodes (buffers allocated before they are read)
    and bounds every read by the file's size.

    Args:
        file (BinaryIO): The open pickle.
        path (str): The file's name, for error messages.
        max_bytes (int, optional): What all arrays together may hold.
            Default: the bytes from the file's position to its end.
    """

    def __init__(self, file: BinaryIO, path: str, max_bytes: Optional[int] = None) -> None:
        # latin1: what numpy needs for arrays pickled by Python 2 (SPEC §5).
        super().__init__(file, encoding='latin1')
        self.path = path
        if max_bytes is None:
            position = file.tell()
            max_bytes = file.seek(0, io.SEEK_END) - position
            file.seek(position)
        self._budget = [max_bytes]

    def find_class(self, module: str, name: str):
        if (module, name) in _RECONSTRUCT:
            return self._reconstruct
        if (module, name) == ('numpy', 'ndarray'):
            return _NDARRAY
        if (module, name) == ('numpy', 'dtype'):
            return self._dtype
        raise RefusedPickleError(
            f'{self.path}: refusing to unpickle the global {module}.{name}: a Paddle '
            f'state dict holds numpy arrays only (allowed globals: {", ".join(_ALLOWED)}). '
            'Nothing in the file was executed.')

    def _reconstruct(self, subtype, shape, code) -> _PickledArray:
        if subtype is not _NDARRAY or shape != (0, ) or code not in (b'b', 'b'):
            raise RefusedPickleError(f'{self.path}: refusing _reconstruct({subtype!r}, '
                                     f'{shape!r}, {code!r}): not the call of a pickled array')
        return _PickledArray(self._budget)

    def _dtype(self, code, align=False, copy=True) -> _PickledDtype:
        if not isinstance(code, str) or not _NUMERIC_DTYPE.match(code):
            raise RefusedPickleError(f'{self.path}: refusing the dtype {code!r}: only plain '
                                     'numeric dtypes (bool, int, uint, float) are allowed')
        return _PickledDtype(code)

    def persistent_load(self, pid):
        raise RefusedPickleError(f'{self.path}: refusing a persistent id ({pid!r}): not '
                                 'part of a Paddle state dict')

    def load(self):
        """The unpickled object; arrays at the top level or in a top-level dict as ndarrays."""
        obj = _array_of(super().load())
        return {k: _array_of(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


def is_pickle(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a pickle of protocol 2 or later."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _check_opcodes(data: bytes, path: str) -> None:
    """Walk the opcodes (nothing runs) so that no length read can outgrow the file.

    ``pickletools.genops`` reads every length-prefixed argument from memory,
    so a length past the end is an error here, not an allocation; protocol 5's
    buffers, which the unpickler allocates before reading them, are refused.
    """
    for opcode, _, _ in pickletools.genops(data):
        if opcode.proto > 4:
            raise RefusedPickleError(f'{path}: refusing the pickle opcode {opcode.name} '
                                     '(protocol 5 buffers): Paddle writes protocol 2 to 4')


def load_pdparams(path: str) -> Dict[str, np.ndarray]:
    """The arrays of a ``paddle.save``-d state dict, without its name table.

    Args:
        path (str): A ``.pdparams`` file. It is only read.

    Returns:
        dict[str, np.ndarray]: Structured name -> array (plain numeric dtype,
        native byte order, its own memory), in file order.

    Raises:
        RefusedPickleError: The pickle names anything but numpy's array globals,
            or builds anything but plain numeric arrays.
        ValueError: A truncated or corrupt file, or not a state dict of arrays.
    """
    with open(path, 'rb') as f:
        data = f.read()
    buffer = io.BytesIO(data)
    try:
        _check_opcodes(data, path)
        obj = NumpyArrayUnpickler(buffer, path, max_bytes=len(data)).load()
    except RefusedPickleError as err:
        message = str(err)
        raise RefusedPickleError(message if message.startswith(path) else
                                 f'{path}: {message}') from None
    except Exception as err:  # the unpickler's errors have no common type
        raise ValueError(f'{path}: truncated or corrupt .pdparams (the pickle stops or '
                         f'breaks: {type(err).__name__}: {err})') from err
    if buffer.read(1):
        raise ValueError(f'{path}: corrupt .pdparams: bytes follow the end of the pickle')
    if not isinstance(obj, dict):
        raise ValueError(f'{path}: not a Paddle state dict: the pickle holds a '
                         f'{type(obj).__name__}, not a dict of arrays')
    state = {k: v for k, v in obj.items() if k != NAME_TABLE_KEY}
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise ValueError(f'{path}: not a Paddle state dict: entry {key!r} is a '
                             f'{type(value).__name__}, not a numeric array')
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
