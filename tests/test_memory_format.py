"""to_memory_format: Tensor.contiguous's values, the gradient back in the source layout."""
import pytest
import torch

from mmrednet.models.layers.memory_format import match_grad_strides, to_memory_format

CL, NCHW = torch.channels_last, torch.contiguous_format


@pytest.mark.parametrize('source,target', [(NCHW, CL), (CL, NCHW)])
# Below and above the size from which torch copies a 2-D transpose blocked.
@pytest.mark.parametrize('shape', [(2, 8, 5, 7), (1, 64, 30, 31)])
def test_copies_values_and_returns_the_gradient_in_the_source_layout(source, target, shape):
    x = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=source)
    x.requires_grad_()
    y = to_memory_format(x, target)
    assert y.is_contiguous(memory_format=target) and torch.equal(y, x)
    grad = torch.randn(shape, dtype=torch.float64).contiguous(memory_format=target)
    y.backward(grad)
    assert x.grad.is_contiguous(memory_format=source) and torch.equal(x.grad, grad)


@pytest.mark.parametrize('target', [NCHW, CL])
def test_gradcheck(target):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    x = x.contiguous(memory_format=CL if target == NCHW else NCHW)
    assert torch.autograd.gradcheck(lambda t: to_memory_format(t, target), (x, ))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_16_bit(dtype):
    x = torch.randn(1, 64, 60, 60).to(dtype).contiguous(memory_format=CL)
    assert torch.equal(to_memory_format(x, NCHW), x)


def test_a_tensor_already_in_the_layout_is_returned_as_it_is():
    x = torch.randn(2, 3, 4, 5, requires_grad=True)
    assert to_memory_format(x, NCHW) is x


def test_other_strides_and_gradients_are_copied_as_contiguous_would():
    base = torch.randn(2, 6, 9, 9, requires_grad=True)
    view = base[:, ::2, 1:, :]  # neither NCHW nor channels-last
    y = to_memory_format(view, CL)
    assert y.is_contiguous(memory_format=CL) and torch.equal(y, view)
    # A gradient with zero strides (as from .mean()) comes back dense.
    y.mean().backward()
    assert torch.allclose(base.grad[:, ::2, 1:, :], torch.full_like(y, 1 / y.numel()))
    assert base.grad[:, 1::2].abs().sum() == 0


@pytest.mark.parametrize('kernel', [1, 3])
def test_match_grad_strides_gives_gradients_the_parameters_strides(kernel):
    """A strided conv on channels-last input: a 1x1 weight's gradient comes with channels-last
    strides, in the parameter's element order; the hook hands on a view with the parameter's
    strides (the same values). A 3x3 weight's gradient, autograd already copies."""
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(8, 16, kernel, stride=2, bias=False)
    hooked = match_grad_strides(torch.nn.Conv2d(8, 16, kernel, stride=2, bias=False))
    hooked.load_state_dict(plain.state_dict())
    x = torch.randn(2, 8, 9, 9).contiguous(memory_format=CL)
    for conv in (plain, hooked):
        conv(x).square().sum().backward()
    assert torch.equal(hooked.weight.grad, plain.weight.grad)
    assert hooked.weight.grad.stride() == hooked.weight.stride()
    if kernel == 1:  # what the hook is for: the strides differ without it
        assert plain.weight.grad.stride() != plain.weight.stride()
