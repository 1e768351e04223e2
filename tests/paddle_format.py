"""Write ``.pdparams`` files as PaddleClas's 2021 RedNet files were written (Paddle 2.x, numpy 1.x).

``paddle.save(layer.state_dict(), path)`` (Paddle 2.1+, ``paddle/framework/io.py``)
stores ``{structured name: Tensor.numpy()}`` plus ``'StructuredToParameterName@@'``
(structured name -> parameter name, e.g. ``conv2d_0.w_0``) with
``pickle.dump(obj, f, protocol=4)``. numpy pickles each array through its own
``__reduce__``; numpy 1.x names the reconstruction function
``numpy.core.multiarray._reconstruct``, numpy 2.x (this venv)
``numpy._core.multiarray._reconstruct``. :class:`Numpy1Pickler` writes the
1.x name on purpose, so the files carry the globals of the real ones.

PaddleClas's RedNet (``ppcls/arch/backbone/model_zoo/rednet.py``) subclasses
``paddle.vision.models.ResNet``: the official module names, BN statistics
``_mean``/``_variance``, ``fc`` a Linear with its weight ``[in, out]``, and the
``stem`` registered after ``fc`` (so it comes last in the file).
"""
import pickle
from typing import Dict, Tuple

import numpy as np
from numpy._core import multiarray
from torch import nn

_NUMPY1_NAMES = {multiarray._reconstruct: ('numpy.core.multiarray', '_reconstruct')}
# Paddle's unique-name prefixes of the layers a RedNet has, and its parameter
# suffixes: weight/bias w_0/b_0, BN mean/variance w_1/w_2.
_PADDLE_LAYER = {nn.Conv2d: 'conv2d', nn.BatchNorm2d: 'batch_norm2d', nn.Linear: 'linear'}
_PADDLE_PARAM = {'weight': 'w_0', 'bias': 'b_0', '_mean': 'w_1', '_variance': 'w_2'}


class Numpy1Pickler(pickle._Pickler):
    """The pure-Python pickler, writing numpy's array constructor under its numpy 1.x name."""

    def save_global(self, obj, name=None):
        legacy = _NUMPY1_NAMES.get(obj)
        if legacy is None:
            return super().save_global(obj, name)
        module, qualname = legacy
        # What save_global writes at protocol 4: two strings and STACK_GLOBAL.
        self.save(module)
        self.save(qualname)
        self.write(pickle.STACK_GLOBAL)
        self.memoize(obj)
        return None


def save_pdparams(obj, path) -> None:
    """``pickle.dump(obj, f, protocol=4)`` as Paddle 2.x under numpy 1.x did it."""
    with open(path, 'wb') as f:
        Numpy1Pickler(f, protocol=4).dump(obj)


def paddle_rednet_state(backbone: nn.Module, fc: nn.Linear) -> Dict[str, object]:
    """PaddleClas's state dict of a RedNet classifier with these weights.

    Args:
        backbone (nn.Module): A RedNet in the official module names
            (``tests.official_layout.OfficialRedNet``).
        fc (nn.Linear): The classifier, PyTorch layout ``[out, in]``.

    Returns:
        dict: name -> float32 array, plus the ``StructuredToParameterName@@`` table.
    """
    counters: Dict[str, int] = {}
    params: Dict[str, Tuple[np.ndarray, str]] = {}
    modules = [(n, m) for n, m in backbone.named_modules() if not n.startswith('stem')]
    modules += [('fc', fc)]
    modules += [(n, m) for n, m in backbone.named_modules() if n.startswith('stem')]
    for name, module in modules:
        kind = _PADDLE_LAYER.get(type(module))
        if kind is None:
            continue
        layer = f'{kind}_{counters.setdefault(kind, 0)}'
        counters[kind] += 1
        values = {'weight': module.weight, 'bias': module.bias}
        if isinstance(module, nn.BatchNorm2d):
            values.update(_mean=module.running_mean, _variance=module.running_var)
        for attr, value in values.items():
            if value is None:
                continue
            array = value.detach().numpy().astype(np.float32)
            if isinstance(module, nn.Linear) and attr == 'weight':
                array = np.ascontiguousarray(array.T)  # Paddle's Linear: [in, out]
            params[f'{name}.{attr}'] = (array, f'{layer}.{_PADDLE_PARAM[attr]}')
    state: Dict[str, object] = {k: array for k, (array, _) in params.items()}
    state['StructuredToParameterName@@'] = {k: pname for k, (_, pname) in params.items()}
    return state
