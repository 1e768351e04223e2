"""Checked stand-ins for the globals that numpy's pickles of plain arrays name.

numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` with the
state ``(1, shape, dtype, is_fortran, raw bytes)``, its dtype as
``dtype('f4', False, True)`` with the state
``(3, byte order, None, None, None, -1, -1, 0)``, and a scalar as
``scalar(dtype, raw bytes)``. numpy 1.x spells the module
``numpy.core.multiarray``, numpy 2.x ``numpy._core.multiarray``. Given to
numpy itself, the same calls and states make what no checkpoint of weights
holds and what crashes Python: ``ndarray`` called directly makes an
uninitialised array of any size, and a dtype's state can turn a float dtype
into one with a subarray, make a structured dtype whose object fields numpy
does not know of (raw bytes read as pointers), or set flags that make numpy
reference-count raw bytes.

The restricted unpicklers of this package resolve those globals to a
:class:`NumpyStandIns`, which accepts only what numpy writes for plain numeric
(bool, int, uint, float) values: dtypes and arrays are built from checked parts
(``np.frombuffer``, then a copy), and nothing reaches numpy's constructors or
``__setstate__``. Arrays and dtypes come out of the unpickler as
:class:`PickledArray` and :class:`PickledDtype`; :func:`unwrap` gives the numpy
objects.
"""
import math
import pickle
import re
from typing import Any, Callable, Dict, Union

import numpy as np

# Plain numeric dtypes only: no object, structured, subarray or flexible ones.
_NUMERIC_DTYPE = re.compile(r'^[biuf][1248]$')
_BYTE_ORDERS = ('<', '>', '|', '=')


class RefusedPickleError(pickle.UnpicklingError):
    """The pickle names a global, or builds an object, that a numeric state dict has not."""


class _NdarrayArgument:
    """What ``numpy.ndarray`` resolves to: the argument of ``_reconstruct``, never called."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise RefusedPickleError('numpy.ndarray is allowed only as the argument of '
                                 '_reconstruct (a pickled array), not called')


NDARRAY = _NdarrayArgument()


class PickledDtype:
    """A plain numeric dtype, as ``dtype(code, align, copy)`` and its state describe it."""

    __slots__ = ('code', 'dtype')

    def __init__(self, code: str) -> None:
        self.code, self.dtype = code, None

    def __setstate__(self, state) -> None:
        if (self.dtype is not None or not isinstance(state, tuple) or len(state) != 8
                or state[0] != 3 or state[1] not in _BYTE_ORDERS
                or state[2:] != (None, None, None, -1, -1, 0)):
            raise RefusedPickleError(f'refusing the dtype state {state!r} of {self.code!r}: '
                                     'only plain numeric dtypes are allowed (no object, '
                                     'structured or subarray dtypes)')
        self.dtype = np.dtype(self.code).newbyteorder(state[1] if state[1] != '|' else '=')


class PickledArray:
    """``_reconstruct``'s result: the array comes from ``__setstate__``'s checked state."""

    __slots__ = ('array', 'claim')

    def __init__(self, claim: Callable[[Union[bytes, str], int], None]) -> None:
        self.array, self.claim = None, claim

    def __setstate__(self, state) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) != 5:
            raise RefusedPickleError('refusing an array state that is not numpy\'s '
                                     '(1, shape, dtype, is_fortran, data)')
        version, shape, dtype, fortran, pickled = state
        # Python 2's str, decoded as latin1; claimed as the pickle's object (one per memo entry).
        data = pickled.encode('latin1') if isinstance(pickled, str) else pickled
        if (version != 1 or not isinstance(shape, tuple)
                or not all(type(s) is int and s >= 0 for s in shape)
                or not isinstance(dtype, PickledDtype) or dtype.dtype is None
                or fortran not in (True, False) or not isinstance(data, bytes)):
            raise RefusedPickleError(f'refusing an array state with shape {shape!r} and dtype '
                                     f'{getattr(dtype, "code", dtype)!r}: not a plain numeric '
                                     'array of numpy\'s pickle format')
        nbytes = math.prod(shape) * dtype.dtype.itemsize
        if nbytes != len(data):
            raise RefusedPickleError(f'an array of shape {shape} and dtype {dtype.code} needs '
                                     f'{nbytes} bytes; the file gives {len(data)}')
        self.claim(pickled, nbytes)
        array = np.frombuffer(data, dtype.dtype).reshape(shape, order='F' if fortran else 'C')
        self.array = array.astype(dtype.dtype.newbyteorder('='), order='K', copy=True)


def unwrap(obj: Any) -> Any:
    """The numpy array or dtype that a stand-in holds; anything else as it is.

    Raises:
        RefusedPickleError: A stand-in whose state never came (not numpy's pickle).
    """
    if isinstance(obj, PickledArray):
        if obj.array is None:
            raise RefusedPickleError('refusing an array without its state: not numpy\'s pickle')
        return obj.array
    if isinstance(obj, PickledDtype):
        if obj.dtype is None:
            raise RefusedPickleError('refusing a dtype without its state: not numpy\'s pickle')
        return obj.dtype
    return obj


class NumpyStandIns:
    """What one load resolves numpy's globals to (see the module docstring).

    Args:
        claim (Callable[[bytes | str, int], None]): Called with each array's
            data as the pickle gave it (one object per memo entry) and its size
            in bytes, before it is copied; raises :class:`RefusedPickleError`
            to refuse it. It bounds what arrays may take when a pickle gives
            many of them one memoized byte string.
    """

    def __init__(self, claim: Callable[[Union[bytes, str], int], None]) -> None:
        self.claim = claim

    def reconstruct(self, subtype, shape, code) -> PickledArray:
        """``numpy.core.multiarray._reconstruct``, for what numpy's arrays pickle only."""
        if subtype is not NDARRAY or shape != (0, ) or code not in (b'b', 'b'):
            raise RefusedPickleError(f'refusing _reconstruct({subtype!r}, {shape!r}, '
                                     f'{code!r}): not the call of a pickled array')
        return PickledArray(self.claim)

    @staticmethod
    def dtype(code, align=False, copy=True) -> PickledDtype:
        """``numpy.dtype``, for plain numeric codes only."""
        if not isinstance(code, str) or not _NUMERIC_DTYPE.match(code):
            raise RefusedPickleError(f'refusing the dtype {code!r}: only plain numeric dtypes '
                                     '(bool, int, uint, float) are allowed')
        return PickledDtype(code)

    @staticmethod
    def scalar(dtype, data) -> np.generic:
        """``numpy.core.multiarray.scalar``: one plain numeric value from its bytes."""
        if isinstance(data, str):  # Python 2's str, decoded as latin1
            data = data.encode('latin1')
        if (not isinstance(dtype, PickledDtype) or dtype.dtype is None
                or not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize):
            raise RefusedPickleError(f'refusing scalar({getattr(dtype, "code", dtype)!r}, ...): '
                                     'not a plain numeric value of numpy\'s pickle format')
        return np.frombuffer(data, dtype.dtype)[0]

    def globals(self, scalars: bool = True) -> Dict[str, Any]:
        """``{module.name: stand-in}`` for the globals numpy's pickles name (numpy 1.x and 2.x).

        Args:
            scalars (bool): Include ``scalar`` (numpy scalars, as mmengine's
                checkpoints hold; a state dict of arrays has none).
        """
        allowed = {'numpy.ndarray': NDARRAY, 'numpy.dtype': self.dtype}
        for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            allowed[f'{module}._reconstruct'] = self.reconstruct
            if scalars:
                allowed[f'{module}.scalar'] = self.scalar
        return allowed
