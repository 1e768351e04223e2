"""Let mmengine's checkpoint loading read mmengine checkpoints under ``weights_only=True``.

mmengine 0.10 checkpoints (``resume``, ``load_from``) hold a message hub with
``HistoryBuffer`` objects and numpy arrays and scalars. torch >= 2.6 unpickles
with an allow-list, so loading them fails. Instead of switching the safety
off, each load that reads such a file may use what mmengine writes, for that
load only: :func:`allow_mmengine_checkpoints` re-registers mmengine's own
``CheckpointLoader`` schemes (the local file of ``resume``, ``load_from`` and
``Pretrained``, and the download schemes) so that each runs through
:func:`load_mmengine_checkpoint`, as the official-weights converter does.

What such a load may use besides torch's own list:

* ``HistoryBuffer``, and its statistics methods: they are pickled as
  ``getattr(HistoryBuffer, 'min')``, and ``getattr`` itself would open the door
  to arbitrary code, so it resolves to a function that returns only those.
* numpy's array, dtype and scalar globals, resolved to the checked stand-ins of
  :mod:`mmrednet.utils.numpy_pickle`: plain numeric and bool values only.
  numpy's own constructors and ``__setstate__`` are never reached (with a
  crafted state they make object or structured dtypes over raw bytes, which
  crash Python when the value is used). The stand-ins are swapped for real
  arrays and dtypes in what the load returns. ``bytes()`` too, which is how
  protocol 2 pickles an empty array's data (never ``bytes(n)``).

torch keeps one process-wide allow-list (``add_safe_globals``); it is neither
changed nor restored here, so the user's own additions stay as they are at
every moment. Instead, the first scoped load wraps torch's lookup of that list
(``torch._weights_only_unpickler._get_user_allowed_globals``, read at every
lookup) so that it also returns the entries of a context variable, which only
a scoped load sets, for its own thread (or asyncio task) and its duration:
every other ``torch.load``, in this thread or another, sees torch's list alone.
"""
import functools
import pickle
import threading
from contextvars import ContextVar
from typing import Any, Callable, Dict, Optional, TypeVar, Union

import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .numpy_pickle import NumpyStandIns, PickledArray, PickledDtype, RefusedPickleError, unwrap

# mmengine registers these when the first HistoryBuffer is made, which a
# process that only loads a checkpoint (inference, tools) has not done yet.
_DEFAULT_STATISTICS = ('min', 'max', 'mean', 'current')
_MMENGINE_LOADERS = 'mmengine.runner.checkpoint'
_STAND_INS = (PickledArray, PickledDtype)
T = TypeVar('T')

# The globals of the scoped load running in this context; None outside one.
_scoped_globals: ContextVar[Optional[Dict[str, Any]]] = ContextVar(
    'mmrednet_checkpoint_globals', default=None)
_install_lock = threading.Lock()


def _history_buffer_method(owner, name: str):
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``."""
    if owner is HistoryBuffer and (name in _DEFAULT_STATISTICS
                                   or name in HistoryBuffer._statistics_methods):
        return getattr(owner, name)
    raise RefusedPickleError(f'refusing to unpickle getattr({owner!r}, {name!r}): only the '
                             'statistics methods of mmengine HistoryBuffer are allowed')


def _empty_bytes(*args) -> bytes:
    """``bytes()``, as protocol 2 pickles ``b''`` (an empty array's data); never ``bytes(n)``."""
    if args:
        raise RefusedPickleError(f'refusing bytes{args!r}: only bytes() is allowed')
    return b''


def _install_scoped_lookup() -> None:
    """Make torch's weights-only unpickler also see :data:`_scoped_globals` (once)."""
    from torch import _weights_only_unpickler as unpickler
    with _install_lock:
        torch_lookup = getattr(unpickler, '_get_user_allowed_globals', None)
        if torch_lookup is None:
            raise RuntimeError(
                f'torch {torch.__version__}: its weights-only unpickler has no '
                '_get_user_allowed_globals, through which mmrednet lets a single load read '
                'mmengine checkpoints; load them with torch.load(weights_only=False) if you '
                'trust them')
        if getattr(torch_lookup, 'mmrednet_scoped', False):
            return

        @functools.wraps(torch_lookup)
        def user_allowed_globals() -> Dict[str, Any]:
            scoped = _scoped_globals.get()
            allowed = torch_lookup()
            return allowed if scoped is None else {**allowed, **scoped}

        user_allowed_globals.mmrednet_scoped = True
        unpickler._get_user_allowed_globals = user_allowed_globals


class _ScopedLoad(NumpyStandIns):
    """The globals of one load, and the stand-ins it made."""

    def __init__(self) -> None:
        super().__init__(self._claim)
        self.made_stand_ins = False
        self._claimed: Dict[int, Union[bytes, str]] = {}
        self.allowed = {f'{HistoryBuffer.__module__}.{HistoryBuffer.__qualname__}': HistoryBuffer,
                        'builtins.getattr': _history_buffer_method,
                        'builtins.bytes': _empty_bytes, **self.globals()}
        # torch builds (``__setstate__``) only objects of allowed types. Under
        # names with a line break, which a pickle's GLOBAL cannot spell.
        self.allowed.update({f'\n{cls.__qualname__}': cls for cls in _STAND_INS})

    def _claim(self, data: Union[bytes, str], nbytes: int) -> None:
        # numpy pickles each array with bytes of its own; CPython shares only its
        # 0- and 1-byte strings. Arrays copied out of one memoized string would
        # each take its size: a small file could ask for any amount of memory.
        if len(data) > 1:
            if id(data) in self._claimed:
                raise RefusedPickleError('refusing an array made of the bytes of another '
                                         '(numpy pickles each array with its own)')
            self._claimed[id(data)] = data

    def reconstruct(self, subtype, shape, code) -> PickledArray:
        self.made_stand_ins = True
        return super().reconstruct(subtype, shape, code)

    def dtype(self, code, align=False, copy=True) -> PickledDtype:
        self.made_stand_ins = True
        return super().dtype(code, align, copy)

    def finish(self, obj: Any) -> Any:
        """``obj`` with numpy's arrays and dtypes for the stand-ins (containers in place)."""
        if not self.made_stand_ins:
            return obj
        try:
            return _swap_stand_ins(obj, {})
        except RecursionError:
            raise RefusedPickleError('refusing a checkpoint nested too deeply to check') from None


def _swap_stand_ins(obj: Any, seen: Dict[int, Any]) -> Any:
    """What :meth:`_ScopedLoad.finish` does, below ``obj``; ``seen``: id -> result."""
    if id(obj) in seen:
        return seen[id(obj)]
    if isinstance(obj, _STAND_INS):
        seen[id(obj)] = unwrap(obj)
        return seen[id(obj)]
    seen[id(obj)] = obj  # a cycle back to obj finds obj
    if isinstance(obj, (str, bytes, bytearray, int, float, complex, type(None))):
        return obj
    if isinstance(obj, dict):
        _swap_values(obj, seen)
    elif isinstance(obj, list):
        obj[:] = [_swap_stand_ins(v, seen) for v in obj]
    elif isinstance(obj, (tuple, set, frozenset)):
        items = [_swap_stand_ins(v, seen) for v in obj]
        if any(new is not old for new, old in zip(items, obj, strict=True)):
            if type(obj) is not tuple:  # numpy arrays are unhashable; tuple subclasses fixed
                raise RefusedPickleError(f'refusing numpy values inside a {type(obj).__name__}')
            seen[id(obj)] = tuple(items)
    if isinstance(getattr(obj, '__dict__', None), dict):  # HistoryBuffer, a Parameter's attributes
        _swap_values(obj.__dict__, seen)
    return seen[id(obj)]


def _swap_values(mapping: dict, seen: Dict[int, Any]) -> None:
    for key, value in list(mapping.items()):
        if _swap_stand_ins(key, seen) is not key:
            raise RefusedPickleError('refusing a numpy array or dtype in a dict key')
        new = _swap_stand_ins(value, seen)
        if new is not value:
            mapping[key] = new


def load_mmengine_checkpoint(load: Callable[..., T], *args, **kwargs) -> T:
    """``load(*args, **kwargs)``, which calls ``torch.load``, with mmengine's globals allowed.

    The allowance holds for this call and the code it runs in this thread only
    (see the module docstring); torch's process-wide allow-list is not touched.
    Re-entrant.

    Args:
        load (Callable): ``torch.load``, or a loader that calls it.
        *args: Passed on to ``load``.
        **kwargs: Passed on to ``load``.

    Returns:
        What ``load`` returns, with numpy arrays, dtypes and scalars where the
        checkpoint has them.

    Raises:
        pickle.UnpicklingError: The checkpoint holds globals that are neither
            torch's, the user's (``add_safe_globals``) nor mmengine's, or numpy
            values other than plain numeric and bool ones.
    """
    _install_scoped_lookup()
    scope = _ScopedLoad()
    token = _scoped_globals.set(scope.allowed)
    try:
        result = load(*args, **kwargs)
    except pickle.UnpicklingError as err:
        # torch re-raises our refusal inside advice to report it to torch; say what it is.
        if isinstance(err.__context__, RefusedPickleError):
            raise RefusedPickleError(
                f'{err.__context__}. mmengine checkpoints hold plain numeric numpy values '
                'only; load this file with torch.load(weights_only=False) only if you trust '
                'it') from None
        raise
    finally:
        _scoped_globals.reset(token)
    return scope.finish(result)


def _scoped(loader: Callable) -> Callable:

    @functools.wraps(loader)  # mmengine logs the loader's name
    def load(*args, **kwargs):
        return load_mmengine_checkpoint(loader, *args, **kwargs)

    load.mmrednet_scoped = True
    return load


def allow_mmengine_checkpoints() -> None:
    """Run mmengine's own checkpoint loaders through :func:`load_mmengine_checkpoint`.

    Every ``CheckpointLoader`` scheme that mmengine defines (they call
    ``torch.load``) is registered again, wrapped; schemes of other packages are
    left alone. Idempotent.
    """
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if loader.__module__ == _MMENGINE_LOADERS and not getattr(loader, 'mmrednet_scoped',
                                                                  False):
            CheckpointLoader.register_scheme(prefix, _scoped(loader), force=True)
