"""The compiled CPU kernels: every instruction set and layout, and how work is split.

The kernels are compiled once per instruction set and picked at run time, so
each variant this CPU runs is checked against the reference here (not only the
widest one, which is what every other test uses), in both memory layouts they
compute in place (contiguous; channels-last with the kernel pixel-major, as a
channels-last model produces it). They unroll the RedNet geometries (kernel
width 3 or 7, stride 1 or 2) and keep a general path; the problems below cover
both, row widths that are not a multiple of the vector length, channel groups
that do not fill a vector, and rows wide enough to be split into several bands
of the kernel tensor.
"""
import pytest
import torch

from mmrednet.ops import cpu, involution_reference

from .helpers import random_problem

pytestmark = pytest.mark.skipif(not cpu.AVAILABLE, reason='the op library was not built')

PROBLEMS = [
    # kernel, stride, dilation, group channels, groups, size
    (7, 1, 1, 16, 2, (10, 9)),
    (7, 2, 1, 16, 2, (13, 11)),
    (3, 1, 1, 16, 1, (9, 20)),
    (3, 2, 1, 8, 2, (9, 7)),
    (5, 1, 2, 3, 2, (8, 11)),  # general path, channels far from a vector
    (5, 2, 2, 20, 1, (7, 7)),
    (1, 1, 1, 4, 2, (5, 6)),
    (7, 1, 1, 16, 1, (10, 700)),  # several bands of kernel rows per block
]


def _isas():
    return cpu.supported_isas() if cpu.AVAILABLE else []


@pytest.fixture
def use_isa():
    before = cpu.isa()
    yield cpu.set_isa
    cpu.set_isa(before)


def _in_layout(x, w, grad_out, layout):
    """The tensors in `layout`; channels-last as a model has them: kernel (N, Ho, Wo, G, K, K)."""
    if layout == 'contiguous':
        return x.contiguous(), w.contiguous(), grad_out.contiguous()
    cl = torch.channels_last
    return (x.contiguous(memory_format=cl), w.permute(0, 4, 5, 1, 2, 3).contiguous().permute(
        0, 3, 4, 5, 1, 2), grad_out.contiguous(memory_format=cl))


def _passes(x, w, grad_out, args):
    geometry = ([args['stride']] * 2, [args['padding']] * 2, [args['dilation']] * 2)
    ops = torch.ops.mmrednet
    return (ops.involution(x, w, *geometry), ops.involution_grad_input(grad_out, x, w, *geometry),
            ops.involution_grad_weight(grad_out, x, w, *geometry))


@pytest.mark.parametrize('isa', _isas())
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('kernel,stride,dilation,group_channels,groups,size', PROBLEMS)
def test_every_instruction_set_matches_reference(use_isa, isa, layout, dtype, kernel, stride,
                                                 dilation, group_channels, groups, size):
    use_isa(isa)
    x, w, args = random_problem(n=1 if size[1] > 100 else 2, c=group_channels * groups,
                                groups=groups, size=size, kernel=kernel, stride=stride,
                                dilation=dilation, dtype=torch.float64)
    ref = involution_reference(x, w, **args)
    grad_out = torch.randn_like(ref)
    want = (ref, *torch.autograd.grad(ref, (x, w), grad_out))
    xx, ww, gg = _in_layout(x.detach().to(dtype), w.detach().to(dtype), grad_out.to(dtype), layout)
    got = _passes(xx, ww, gg, args)
    tol = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    for name, g, r in zip(('forward', 'grad_input', 'grad_weight'), got, want, strict=True):
        assert g.dtype == dtype, name
        torch.testing.assert_close(g.double(), r, **tol, msg=lambda m, name=name: f'{name}: {m}')
    if layout == 'channels_last':  # outputs in the layout of their inputs: no copies around the op
        assert got[0].is_contiguous(memory_format=torch.channels_last)
        assert got[1].is_contiguous(memory_format=torch.channels_last)
        assert got[2].permute(0, 4, 5, 1, 2, 3).is_contiguous()


def test_channels_last_strides_are_what_the_fakes_say():
    # torch.compile plans with the fake implementations: their strides must be the real ones.
    x, w, args = random_problem(n=2, c=32, groups=2, size=(9, 8), kernel=3, stride=2,
                                dtype=torch.float32)
    xx, ww, _ = _in_layout(x.detach(), w.detach(), x.detach(), 'channels_last')
    geometry = ([2, 2], [1, 1], [1, 1])
    torch.library.opcheck(torch.ops.mmrednet.involution.default,
                          (xx.requires_grad_(), ww.requires_grad_(), *geometry))


def test_instruction_set_choice_is_checked(use_isa):
    assert cpu.isa() == cpu.supported_isas()[0]  # the widest by default
    assert 'baseline' in cpu.supported_isas()
    with pytest.raises(RuntimeError, match="instruction set 'sse9' is not supported"):
        use_isa('sse9')


@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('kernel,stride', [(7, 1), (3, 2)])
def test_results_do_not_depend_on_the_thread_count(layout, kernel, stride):
    # Tasks are bands of rows whose number depends on the thread count; every
    # output is still summed in the same order, so results are bitwise equal.
    x, w, args = random_problem(n=1, c=32, groups=2, size=(23, 18), kernel=kernel, stride=stride,
                                dtype=torch.float32, requires_grad=False)
    x, w, grad_out = _in_layout(x, w, torch.randn(1, 32, *w.shape[-2:]), layout)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3, 5):
            torch.set_num_threads(n)
            results.append(_passes(x, w, grad_out, args))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
