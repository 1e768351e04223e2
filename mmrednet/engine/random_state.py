"""The global random generators of a process, as plain tensors and numbers.

What data pipelines and models draw from: Python's ``random``, NumPy's legacy
global generator and torch's CPU and CUDA generators (what Hugging Face
Accelerate's ``save_state`` keeps). The state holds only tensors, ints, floats
and None, so a checkpoint with it loads under ``torch.load(weights_only=True)``
without allowing any further class.
"""
import random
from typing import Any, Dict

import numpy as np
import torch

_PYTHON_WORDS = 625  # Mersenne Twister: 624 words and the position
_NUMPY_WORDS = 624


def get_random_state() -> Dict[str, Any]:
    """This process's generator states.

    Returns:
        dict: ``python``, ``numpy``, ``torch`` (a uint8 tensor) and ``cuda``
        (one uint8 tensor per device; empty until CUDA is initialised, when
        nothing has drawn from it).
    """
    version, words, gauss = random.getstate()
    _, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    cuda = []
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.get_rng_state_all()
    return dict(
        python=dict(version=version, gauss=gauss,
                    words=torch.from_numpy(np.fromiter(words, np.int64, len(words)))),
        numpy=dict(keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), gauss=float(cached)),
        torch=torch.get_rng_state(),
        cuda=cuda)


def set_random_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`get_random_state` returned (checked first: it comes from a file).

    CUDA states are restored for the devices present (the first ones when the
    counts differ), and only where CUDA is available.

    Raises:
        ValueError: ``state`` is not such a state; nothing has been changed.
    """
    python, numpy_state = check_random_state(state)
    random.setstate((python['version'], tuple(python['words'].tolist()), python['gauss']))
    np.random.set_state(('MT19937', numpy_state['keys'].numpy().astype(np.uint32),
                         numpy_state['pos'], numpy_state['has_gauss'], numpy_state['gauss']))
    torch.set_rng_state(state['torch'])
    if state['cuda'] and torch.cuda.is_available():
        for device, cuda_state in enumerate(state['cuda'][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def _words(value: Any, count: int, name: str) -> torch.Tensor:
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.int64
            and value.shape == (count, )):
        raise ValueError(f'random state: {name} must be an int64 tensor of shape ({count},), '
                         f'got {type(value).__name__} {getattr(value, "shape", "")}')
    if bool((value < 0).any()) or bool((value >= 2**32).any()):
        raise ValueError(f'random state: {name} must hold 32-bit words (0 <= w < 2**32)')
    return value


def _number(value: Any, types: tuple, name: str) -> Any:
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(f'random state: {name} must be {" or ".join(t.__name__ for t in types)}, '
                         f'got {type(value).__name__}')
    return value


def check_random_state(state: Any) -> tuple:
    """Raise ValueError unless ``state`` is what :func:`get_random_state` returns; its parts."""
    if not isinstance(state, dict) or not {'python', 'numpy', 'torch', 'cuda'} <= state.keys():
        raise ValueError('random state must be a dict with python, numpy, torch and cuda, '
                         f'got {type(state).__name__}')
    python, numpy_state = state['python'], state['numpy']
    if not isinstance(python, dict) or not isinstance(numpy_state, dict):
        raise ValueError('random state: python and numpy must be dicts')
    _number(python.get('version'), (int, ), 'python.version')
    _words(python.get('words'), _PYTHON_WORDS, 'python.words')
    if python.get('gauss') is not None:
        _number(python['gauss'], (float, ), 'python.gauss')
    _words(numpy_state.get('keys'), _NUMPY_WORDS, 'numpy.keys')
    if not 0 <= _number(numpy_state.get('pos'), (int, ), 'numpy.pos') <= _NUMPY_WORDS:
        raise ValueError(f'random state: numpy.pos must be in [0, {_NUMPY_WORDS}]')
    _number(numpy_state.get('has_gauss'), (int, ), 'numpy.has_gauss')
    _number(numpy_state.get('gauss'), (float, ), 'numpy.gauss')
    tensors = [state['torch'], *state['cuda']] if isinstance(state['cuda'], list) else None
    if tensors is None or not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8
                                  and t.dim() == 1 for t in tensors):
        raise ValueError('random state: torch must be a uint8 tensor and cuda a list of them')
    if state['torch'].numel() != torch.get_rng_state().numel():
        raise ValueError(f'random state: torch must have {torch.get_rng_state().numel()} bytes, '
                         f'got {state["torch"].numel()}')
    return python, numpy_state
