"""``torch.compile`` (CPU inductor) trains with the eager gradients.

torch 2.14's inductor differentiates ``AvgPool(s, s, ceil_mode=True)`` wrongly
at sizes that are not a multiple of ``s`` unless ``count_include_pad=False``;
the strided involution's kernel branch and RedNet's ``avg_down`` pool in ceil
mode, so they use that form. Compared in float64, where compiled and eager code
differ by rounding only, so a tight tolerance separates a wrong formula from
reordered sums.
"""
import pytest
import torch
from torch import nn

from mmrednet.models import Involution, Involution1d, RedNet

from .official_layout import randomize_norms


class _Branches(nn.ModuleList):
    """The modules side by side on one input: one compile covers them all."""

    def forward(self, x):
        return tuple(module(x) for module in self)


def _grads(module, x):
    """Outputs and gradients of ``module(x)`` (input first, then the parameters)."""
    module.zero_grad()
    x = x.detach().requires_grad_()
    out = module(x)
    outs = out if isinstance(out, tuple) else (out, )
    # Weighted, so that no gradient is a plain sum that a wrong divisor keeps.
    loss = sum((o * torch.linspace(-1, 2, o.numel(), dtype=o.dtype).view_as(o)).sum()
               for o in outs)
    loss.backward()
    return [o.detach() for o in outs], [x.grad] + [p.grad for p in module.parameters()]


def _assert_close(got, expected, what):
    # Relative to the tensor's largest value: a gradient summed over many pixels
    # cancels to values far smaller than its terms, and their rounding.
    error = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert error <= 1e-10 * scale, f'{what}: max error {error:.3g} of {scale:.3g}'


def _assert_compiled_equals_eager(module, sizes, channels):
    torch._dynamo.reset()  # a fresh compile per test: no recompile limit carried over
    compiled = torch.compile(module, backend='inductor', dynamic=False)
    names = ['input'] + [name for name, _ in module.named_parameters()]
    for size in sizes:
        x = torch.randn(2, channels, *size, dtype=torch.double)
        eager_outs, eager_grads = _grads(module, x)
        outs, grads = _grads(compiled, x)
        for i, (got, expected) in enumerate(zip(outs, eager_outs, strict=True)):
            _assert_close(got, expected, f'output {i} at {size}')
        for name, got, expected in zip(names, grads, eager_grads, strict=True):
            _assert_close(got, expected, f'gradient of {name} at {size}')


@pytest.mark.parametrize('layer_type,sizes', [
    (Involution, [(13, 12), (9, 10)]),
    (Involution1d, [(13, ), (12, )]),
])
def test_compiled_layer_gradients_equal_eager(layer_type, sizes):
    # Strides 1, 2 and 3 side by side (parameter names: 0., 1., 2.), odd and even sizes.
    layers = _Branches(layer_type(16, kernel_size=3, stride=stride, group_channels=8)
                       for stride in (1, 2, 3)).double()
    _assert_compiled_equals_eager(layers, sizes, 16)


@pytest.mark.parametrize('avg_down', [False, True])
def test_compiled_rednet_gradients_equal_eager(avg_down):
    # RedNet-26's first two stages, narrow, in training mode (batch statistics); at
    # 100 x 100 the strided stage (involution, avg_down) sees a 25 x 25 map.
    model = RedNet(26, base_channels=16, stem_channels=32, num_stages=2, strides=(1, 2),
                   dilations=(1, 1), out_indices=(0, 1), avg_down=avg_down,
                   zero_init_residual=False, channels_last=False).double()
    randomize_norms(model)
    _assert_compiled_equals_eager(model, [(100, 100)], 3)


@pytest.mark.parametrize('layer_type,pool_type', [(Involution, nn.AvgPool2d),
                                                  (Involution1d, nn.AvgPool1d)])
@pytest.mark.parametrize('stride', [2, 3])
def test_layer_pool_equals_the_ceil_mode_pool(layer_type, pool_type, stride):
    # The pool inductor gets right computes what the ceil-mode pool did, bit for bit.
    layer = layer_type(8, kernel_size=3, stride=stride, group_channels=4)
    pool, expected_pool = layer.avgpool, pool_type(stride, stride, ceil_mode=True)
    for size in [(13, 11), (12, 12), (1, 5), (3, 2), (5, 1)]:
        x = torch.randn(2, 8, *size[-layer._ndim:], dtype=torch.double)
        out, grads = _grads(pool, x)
        expected, expected_grads = _grads(expected_pool, x)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        torch.testing.assert_close(grads, expected_grads, rtol=0, atol=0)
