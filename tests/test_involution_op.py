"""The functional op and its backends against the reference implementation."""
import pytest
import torch

from mmrednet.ops import cpu, involution, involution_backward, involution_reference, portable
from mmrednet.ops._args import canonicalize

from .helpers import random_problem

GEOMETRIES = [
    # kernel, stride, dilation, groups, size
    (1, 1, 1, 4, (5, 6)),
    (3, 1, 1, 1, (9, 7)),
    (3, 2, 1, 2, (9, 7)),
    (5, 1, 2, 8, (8, 11)),
    (5, 2, 2, 4, (7, 7)),
    (7, 1, 1, 2, (10, 9)),
    (7, 2, 1, 32, (13, 11)),
    (7, 2, 2, 2, (5, 6)),  # dilated taps mostly fall outside
]


def _grads(fn, x, w, args):
    out = fn(x, w, **args)
    grad_out = torch.randn_like(out)
    return (out, *torch.autograd.grad(out, (x, w), grad_out)), grad_out


@pytest.mark.parametrize('kernel,stride,dilation,groups,size', GEOMETRIES)
def test_op_matches_reference(kernel, stride, dilation, groups, size):
    x, w, args = random_problem(groups=groups, size=size, kernel=kernel, stride=stride,
                                dilation=dilation)
    torch.manual_seed(1)
    got, _ = _grads(involution, x, w, args)
    torch.manual_seed(1)
    want, _ = _grads(involution_reference, x, w, args)
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize('channels_last', [False, True])
@pytest.mark.parametrize('kernel,stride,dilation,groups,size', GEOMETRIES[1:5])
def test_portable_backend_matches_reference(kernel, stride, dilation, groups, size,
                                            channels_last):
    # The fallback without compiled kernels meets the layouts a model hands the op too.
    x, w, args = random_problem(groups=groups, size=size, kernel=kernel, stride=stride,
                                dilation=dilation, requires_grad=False)
    xx, ww, geo, _ = canonicalize(x, w, **args)
    if channels_last:
        xx = xx.contiguous(memory_format=torch.channels_last)
        ww = ww.permute(0, 4, 5, 1, 2, 3).contiguous().permute(0, 3, 4, 5, 1, 2)
    geometry = (geo.stride, geo.padding, geo.dilation)
    xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
    ref = involution_reference(xr, wr, **args)
    grad_out = torch.randn_like(ref)
    ref_gx, ref_gw = torch.autograd.grad(ref, (xr, wr), grad_out)
    torch.testing.assert_close(portable.forward(xx, ww, *geometry), ref)
    torch.testing.assert_close(portable.grad_input(grad_out, xx, ww, *geometry), ref_gx)
    torch.testing.assert_close(portable.grad_weight(grad_out, xx, ww, *geometry), ref_gw)


def test_compiled_cpu_kernels_are_built():
    """The install builds the native CPU kernels; without them CPU runs the slow path."""
    assert cpu.AVAILABLE, 'mmrednet/_C.so was not built: reinstall with a C++ compiler'


@pytest.mark.parametrize('kernel,stride,dilation', [(3, 1, 1), (3, 2, 2), (5, 2, 1)])
def test_gradcheck_float64(kernel, stride, dilation):
    x, w, args = random_problem(n=1, c=4, groups=2, size=(5, 6), kernel=kernel, stride=stride,
                                dilation=dilation)
    assert torch.autograd.gradcheck(lambda a, b: involution(a, b, **args), (x, w))


def test_one_dimensional_matches_reference_and_gradcheck():
    x, w, args = random_problem(n=2, c=6, groups=3, size=(11, ), kernel=5, stride=2)
    out = involution(x, w, **args)
    assert out.shape == (2, 6, 6)
    torch.testing.assert_close(out, involution_reference(x, w, **args))
    assert torch.autograd.gradcheck(lambda a, b: involution(a, b, **args), (x, w))


def test_one_dimensional_is_two_dimensional_with_unit_height():
    x, w, args = random_problem(n=2, c=8, groups=2, size=(10, ), kernel=3, requires_grad=False)
    out_1d = involution(x, w, **args)
    w_2d = w.unsqueeze(2).unsqueeze(4)  # (N, G, 1, K, 1, L)
    out_2d = involution(x.unsqueeze(2), w_2d, stride=1, padding=(0, 1), dilation=1)
    torch.testing.assert_close(out_1d, out_2d.squeeze(2))


def test_definition_by_hand():
    """One output pixel computed straight from the formula of SPEC §1."""
    x, w, args = random_problem(n=1, c=4, groups=2, size=(6, 6), kernel=3, stride=2,
                                dilation=2, requires_grad=False)
    out = involution(x, w, **args)
    n, c, i, j, s, d, p = 0, 3, 1, 2, 2, 2, 2
    g = c // 2
    want = sum(w[n, g, u, v, i, j] * x[n, c, i * s + u * d - p, j * s + v * d - p]
               for u in range(3) for v in range(3)
               if 0 <= i * s + u * d - p < 6 and 0 <= j * s + v * d - p < 6)
    torch.testing.assert_close(out[n, c, i, j], want)


def test_non_contiguous_inputs():
    x, w, args = random_problem(n=2, c=16, groups=4, size=(9, 8), kernel=3, stride=2)
    x_nc = x.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    w_nc = w.detach().permute(0, 1, 2, 3, 5, 4).contiguous().permute(0, 1, 2, 3, 5, 4)
    w_nc.requires_grad_()
    assert not x_nc.is_contiguous() and not w_nc.is_contiguous()
    out = involution(x_nc, w_nc, **args)
    torch.testing.assert_close(out, involution_reference(x, w, **args))
    out.sum().backward()
    assert x_nc.grad.shape == x.shape and w_nc.grad.shape == w.shape


def test_empty_batch():
    x, w, args = random_problem(n=0, c=8, groups=2, size=(5, 5), kernel=3)
    out = involution(x, w, **args)
    assert out.shape == (0, 8, 5, 5)
    out.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float32])
def test_reduced_precision_on_cpu(dtype):
    x, w, args = random_problem(c=16, groups=2, size=(7, 7), kernel=7, dtype=torch.float64)
    out = involution(x.to(dtype), w.to(dtype), **args)
    assert out.dtype == dtype
    ref = involution_reference(x, w, **args)
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(out.double(), ref, atol=tol * ref.abs().max().item(), rtol=0)


def test_opcheck():
    for args in ((3, 1, 1), (5, 2, 2)):
        x, w, geo = random_problem(n=2, c=8, groups=2, size=(7, 6), kernel=args[0],
                                   stride=args[1], dilation=args[2], dtype=torch.float32)
        xx, ww, g, _ = canonicalize(x.detach(), w.detach(), **geo)
        xx.requires_grad_()
        ww.requires_grad_()
        torch.library.opcheck(torch.ops.mmrednet.involution.default,
                              (xx, ww, list(g.stride), list(g.padding), list(g.dilation)))


def test_torch_compile_has_no_graph_break():
    x, w, args = random_problem(n=1, c=8, groups=2, size=(6, 6), kernel=3, dtype=torch.float32)
    explanation = torch._dynamo.explain(lambda a, b: involution(a, b, **args))(x, w)
    assert explanation.graph_break_count == 0
    compiled = torch.compile(lambda a, b: involution(a, b, **args), backend='aot_eager',
                             fullgraph=True)
    out = compiled(x, w)
    torch.testing.assert_close(out, involution_reference(x, w, **args))
    gx, gw = torch.autograd.grad(out.sum(), (x, w))
    rx, rw = torch.autograd.grad(involution_reference(x, w, **args).sum(), (x, w))
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gw, rw)


@pytest.mark.parametrize('make_bad,match', [
    (lambda x, w: (x[0, 0], w), r'input must be \(N, C, L\) or \(N, C, H, W\)'),
    (lambda x, w: (x, w[..., 0]), r'weight must be \(N, G, K, K, H_out, W_out\)'),
    (lambda x, w: (x, w[:1]), 'weight batch size 1 must equal input batch size 2'),
    (lambda x, w: (x[:, :7], w), r'groups \(weight.shape\[1\] = 2\) must divide the input '
     r'channels \(7\)'),
    (lambda x, w: (x, w[..., :-1]), 'weight spatial size .* must equal the output size'),
    (lambda x, w: (x, w.float()), 'weight dtype torch.float32 must equal input dtype'),
    (lambda x, w: (x.long(), w.long()), 'input must be a floating point tensor'),
    (lambda x, w: (x, w.to('meta')), 'weight is on meta but input is on cpu'),
])
def test_bad_input_is_named(make_bad, match):
    x, w, args = random_problem(n=2, c=8, groups=2, size=(6, 6), kernel=3,
                                requires_grad=False)
    bad_x, bad_w = make_bad(x, w)
    with pytest.raises((ValueError, TypeError), match=match):
        involution(bad_x, bad_w, **args)


@pytest.mark.parametrize('kwargs,match', [
    (dict(stride=0), 'stride must be >= 1'),
    (dict(padding=-1), 'padding must be >= 0'),
    (dict(stride=(1, 2, 3)), 'stride must be an int or 2 ints'),
])
def test_bad_geometry_is_named(kwargs, match):
    x, w, args = random_problem(n=1, c=4, groups=2, size=(6, 6), kernel=3,
                                requires_grad=False)
    with pytest.raises(ValueError, match=match):
        involution(x, w, **{**args, **kwargs})


def test_input_too_small_for_kernel():
    x = torch.randn(1, 4, 2, 2)
    w = torch.randn(1, 1, 7, 7, 1, 1)
    with pytest.raises(ValueError, match='too small for kernel'):
        involution(x, w, dilation=1, padding=0)


def test_autocast_mixes_fp32_input_and_low_precision_kernel():
    x, w, args = random_problem(c=16, groups=2, size=(7, 7), kernel=3, dtype=torch.float32)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = involution(x, w.bfloat16(), **args)
    assert out.dtype == torch.bfloat16
    ref = involution_reference(x.double(), w.bfloat16().double(), **args)
    torch.testing.assert_close(out.double(), ref, atol=0.1 * ref.abs().max().item(), rtol=0)
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad is not None
    with pytest.raises(TypeError, match='weight dtype torch.bfloat16 must equal input dtype'):
        involution(x, w.bfloat16(), **args)  # outside autocast a mismatch stays an error


@pytest.mark.parametrize('size', [(9, 7), (11, )])
def test_backward_without_forward_equals_autograd(size):
    x, w, args = random_problem(c=16, groups=4, size=size, kernel=5, stride=2)
    (_, grad_x, grad_w), grad_out = _grads(involution, x, w, args)
    got_x, got_w = involution_backward(grad_out, x, w, **args)
    torch.testing.assert_close(got_x, grad_x, rtol=0, atol=0)
    torch.testing.assert_close(got_w, grad_w, rtol=0, atol=0)
    only_w = involution_backward(grad_out, x, w, **args, output_mask=(False, True))
    assert only_w[0] is None
    torch.testing.assert_close(only_w[1], grad_w, rtol=0, atol=0)
    with pytest.raises(ValueError, match='grad_output must have the output shape'):
        involution_backward(grad_out[..., :-1], x, w, **args)


def test_backward_without_forward_casts_as_the_forward_under_autocast():
    x, w, args = random_problem(c=16, groups=2, size=(7, 7), kernel=3, dtype=torch.float32)
    w = w.detach().bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = involution(x, w, **args)
        grad_out = torch.randn_like(out)
        got_x, got_w = involution_backward(grad_out, x, w, **args)
    want_x, want_w = torch.autograd.grad(out, (x, w), grad_out)
    assert got_x.dtype == torch.float32 and got_w.dtype == torch.bfloat16
    torch.testing.assert_close(got_x, want_x, rtol=0, atol=0)
    torch.testing.assert_close(got_w, want_w, rtol=0, atol=0)
