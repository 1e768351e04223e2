"""``involution_fused_backward``: the fused op's gradients without its forward."""
import pytest
import torch

from mmrednet.ops import involution_fused, involution_fused_backward

from .fused_helpers import fused_problem, outputs_and_grads


@pytest.mark.parametrize('size,layout', [((9, 7), 'contiguous'), ((9, 7), 'channels_last'),
                                         ((11, ), 'contiguous')])
@pytest.mark.parametrize('stride,dilation', [(1, 1), (2, 2)])
@pytest.mark.parametrize('bias', [True, False])
def test_equals_the_gradients_of_the_fused_op(size, layout, stride, dilation, bias):
    torch.manual_seed(0)
    x, h, w, b, kwargs = fused_problem(size=size, stride=stride, dilation=dilation, bias=bias,
                                       requires_grad=False)
    if layout == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    w = w.view(*w.shape, *(1, ) * len(size))  # as the layer's 1x1 convolution stores it
    grad_out = torch.randn(*x.shape[:2], *h.shape[2:], dtype=x.dtype)
    expected = outputs_and_grads(involution_fused, x, h, w, b, grad_out, kwargs)[1]
    kernel_size = kwargs.pop('kernel_size')
    got = involution_fused_backward(grad_out, x, h, w, kernel_size, b, **kwargs)
    for name, g, e in zip(('input', 'hidden', 'weight', 'bias'), got, expected, strict=True):
        assert (g is None) == (e is None), name
        if e is not None:
            assert g.shape == e.shape and g.dtype == e.dtype, name
            torch.testing.assert_close(g, e, msg=lambda m, name=name: f'{name}: {m}')


def test_output_mask_computes_only_what_is_asked():
    x, h, w, b, kwargs = fused_problem(requires_grad=False)
    grad_out = torch.randn(*x.shape[:2], *h.shape[2:], dtype=x.dtype)
    kernel_size = kwargs.pop('kernel_size')
    full = involution_fused_backward(grad_out, x, h, w, kernel_size, b, **kwargs)
    for mask in [(True, False, False, False), (False, True, False, True),
                 (False, False, True, False), (False, ) * 4]:
        got = involution_fused_backward(grad_out, x, h, w, kernel_size, b, **kwargs,
                                        output_mask=mask)
        for wanted, g, f in zip(mask, got, full, strict=True):
            assert (g is not None) == wanted
            if wanted:
                torch.testing.assert_close(g, f, rtol=0, atol=0)


def test_casts_as_the_forward_under_autocast():
    # A float32 input, a bfloat16 hidden (a convolution's output under autocast) and
    # float32 span parameters: computed in bfloat16, gradients in each argument's dtype.
    x, h, w, b, kwargs = fused_problem(dtype=torch.float32, requires_grad=False)
    h = h.bfloat16()
    grad_out = torch.randn(*x.shape[:2], *h.shape[2:], dtype=torch.bfloat16)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        expected = outputs_and_grads(involution_fused, x, h, w, b, grad_out, kwargs)[1]
        kernel_size = kwargs.pop('kernel_size')
        got = involution_fused_backward(grad_out, x, h, w, kernel_size, b, **kwargs)
    for g, e, t in zip(got, expected, (x, h, w, b), strict=True):
        assert g.dtype == e.dtype == t.dtype
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_wrong_grad_output_shape_is_named():
    x, h, w, b, kwargs = fused_problem(requires_grad=False)
    kernel_size = kwargs.pop('kernel_size')
    with pytest.raises(ValueError, match=r'grad_output must have the output shape \(2, 32, 9, 7\)'):
        involution_fused_backward(torch.randn(2, 32, 9, 6, dtype=x.dtype), x, h, w, kernel_size,
                                  b, **kwargs)
    x, h, w, b, kwargs = fused_problem(size=(11, ), requires_grad=False)
    kernel_size = kwargs.pop('kernel_size')
    with pytest.raises(ValueError, match=r'grad_output must have the output shape \(2, 32, 11\)'):
        involution_fused_backward(torch.randn(2, 32, 1, 11, dtype=x.dtype), x, h, w,
                                  kernel_size, b, **kwargs)
