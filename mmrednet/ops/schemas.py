"""The schemas of the ``mmrednet::involution*`` ops: the one place that spells them.

The compiled op library defines the ops with these strings (``setup.py`` writes
them into a header it compiles); without the library ``library.py`` defines them
from Python. Plain strings, no imports: ``setup.py`` reads this file before
torch is importable.
"""
_GEOMETRY = 'SymInt[] stride, SymInt[] padding, SymInt[] dilation'

SCHEMAS = {
    'involution': f'involution(Tensor input, Tensor weight, {_GEOMETRY}) -> Tensor',
    'involution_grad_input': ('involution_grad_input(Tensor grad_output, Tensor input, '
                              f'Tensor weight, {_GEOMETRY}) -> Tensor'),
    'involution_grad_weight': ('involution_grad_weight(Tensor grad_output, Tensor input, '
                               f'Tensor weight, {_GEOMETRY}) -> Tensor'),
}
