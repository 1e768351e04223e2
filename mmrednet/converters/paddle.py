"""Read PaddleClas ``.pdparams`` RedNet weights without Paddle.

PaddleClas publishes the official ImageNet RedNet weights, converted from the
original repository (github.com/d-li14/involution), whose own links are dead.

``paddle.save(layer.state_dict(), path)`` (Paddle 2.x) writes a Python pickle,
protocol 4 by default, of ``{structured name: numpy.ndarray}`` plus one entry
``'StructuredToParameterName@@'`` (structured name -> parameter name such as
``conv2d_0.w_0``). A pickle can name any importable callable, so the file is
read by :class:`NumpyArrayUnpickler`, which resolves exactly the globals that
numpy's own pickles of plain arrays name, to stand-ins that check their
arguments, and refuses every other one before anything is called; no array
may claim more bytes than the file holds.

PaddleClas's RedNet keeps the official module names (those of the original
repository's ``cls/`` code); its keys
differ from the official mmcls checkpoints in three ways, which
:func:`paddle_to_official` undoes: BN statistics are ``_mean``/``_variance``
(no ``num_batches_tracked``), the classifier is ``fc.*`` with the weight stored
``[in, out]``, and there is no ``backbone.`` prefix.
"""
import io
import pickle
import pickletools
import re
from typing import BinaryIO, Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor

from ..utils.numpy_pickle import NumpyStandIns, RefusedPickleError, unwrap

NAME_TABLE_KEY = 'StructuredToParameterName@@'
_BN_STAT = re.compile(r'^(?P<bn>.+)\.(?P<stat>_mean|_variance)$')


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
        # latin1: what numpy needs for arrays pickled by Python 2.
        super().__init__(file, encoding='latin1')
        self.path = path
        if max_bytes is None:
            position = file.tell()
            max_bytes = file.seek(0, io.SEEK_END) - position
            file.seek(position)
        self._budget = max_bytes
        # A state dict holds arrays only: no numpy scalars.
        self._numpy = NumpyStandIns(self._claim).globals(scalars=False)

    def _claim(self, data: Union[bytes, str], nbytes: int) -> None:
        # Arrays may share one memoized byte string: together they may not
        # claim more bytes than the file has.
        if nbytes > self._budget:
            raise RefusedPickleError('the arrays claim more bytes than the file holds')
        self._budget -= nbytes

    def find_class(self, module: str, name: str):
        stand_in = self._numpy.get(f'{module}.{name}')
        if stand_in is not None:
            return stand_in
        raise RefusedPickleError(
            f'{self.path}: refusing to unpickle the global {module}.{name}: a Paddle '
            f'state dict holds numpy arrays only (allowed globals: '
            f'{", ".join(sorted(self._numpy))}). Nothing in the file was executed.')

    def persistent_load(self, pid):
        raise RefusedPickleError(f'{self.path}: refusing a persistent id ({pid!r}): not '
                                 'part of a Paddle state dict')

    def load(self):
        """The unpickled object; arrays at the top level or in a top-level dict as ndarrays."""
        obj = unwrap(super().load())
        return {k: unwrap(v) for k, v in obj.items()} if isinstance(obj, dict) else obj


def is_pickle(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a pickle of protocol 2 or later."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


# The C unpickler grows its memo table to twice any index that a PUT stores at,
# before it builds anything: 9 bytes could ask for 64 GiB.
_MEMO_PUTS = frozenset({'PUT', 'BINPUT', 'LONG_BINPUT'})


def _check_opcodes(data: bytes, path: str) -> None:
    """Walk the opcodes (nothing runs) so that no allocation can outgrow the file.

    ``pickletools.genops`` reads every length-prefixed argument from memory,
    so a length past the end is an error here, not an allocation. A pickler
    numbers its memo entries 0, 1, 2, ... in the order it stores them, so a
    memo index may not exceed the number of entries stored before it (which
    bounds the memo table by the file's size); a frame may not be longer than
    the rest of the file; protocol 5's buffers, which the unpickler allocates
    before reading them, are refused.
    """
    stored = 0
    for opcode, arg, pos in pickletools.genops(data):
        if opcode.proto > 4:
            raise RefusedPickleError(f'{path}: refusing the pickle opcode {opcode.name} '
                                     '(protocol 5 buffers): Paddle writes protocol 2 to 4')
        if opcode.name in _MEMO_PUTS:
            if not 0 <= arg <= stored:
                raise RefusedPickleError(f'{path}: refusing the memo index {arg} of '
                                         f'{opcode.name} at byte {pos}: {stored} objects were '
                                         'stored before it')
            stored += 1
        elif opcode.name == 'MEMOIZE':
            stored += 1
        elif opcode.name == 'FRAME' and arg > len(data) - pos:
            raise RefusedPickleError(f'{path}: refusing a frame of {arg} bytes at byte {pos}: '
                                     f'only {len(data) - pos} bytes follow')


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
