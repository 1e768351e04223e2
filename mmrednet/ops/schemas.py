"""The schemas of the ``mmrednet::involution*`` ops: the one place that spells them.

The fused ops take the span (a 1x1 convolution of ``hidden`` by ``weight``
``(G*Kh*Kw, C_hidden)`` and ``bias``) instead of the kernel it generates;
``involution_fused_grad_span`` returns the gradients of hidden, weight and bias.

The compiled op library defines the ops with these strings (``setup.py`` writes
them into a header it compiles); without the library ``library.py`` defines them
from Python. Plain strings, no imports: ``setup.py`` reads this file before
torch is importable.
"""
_GEOMETRY = 'SymInt[] stride, SymInt[] padding, SymInt[] dilation'
# The fused op's span (a 1x1 convolution of hidden) and geometry.
_SPAN = 'Tensor input, Tensor hidden, Tensor weight'
_FUSED_GEOMETRY = f'SymInt[] kernel_size, {_GEOMETRY}'

SCHEMAS = {
    'involution': f'involution(Tensor input, Tensor weight, {_GEOMETRY}) -> Tensor',
    'involution_grad_input': ('involution_grad_input(Tensor grad_output, Tensor input, '
                              f'Tensor weight, {_GEOMETRY}) -> Tensor'),
    'involution_grad_weight': ('involution_grad_weight(Tensor grad_output, Tensor input, '
                               f'Tensor weight, {_GEOMETRY}) -> Tensor'),
    'involution_fused': (f'involution_fused({_SPAN}, Tensor? bias, {_FUSED_GEOMETRY}) '
                         '-> Tensor'),
    'involution_fused_grad_input': ('involution_fused_grad_input(Tensor grad_output, '
                                    f'{_SPAN}, Tensor? bias, {_FUSED_GEOMETRY}) -> Tensor'),
    'involution_fused_grad_span': ('involution_fused_grad_span(Tensor grad_output, '
                                   f'{_SPAN}, {_FUSED_GEOMETRY}) -> (Tensor, Tensor, Tensor)'),
}
