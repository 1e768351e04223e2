"""The fused involution op ``involution(x, span(h))``: against its composition, everywhere.

The composition (the span convolution writes the kernel, the unfolding
reference applies it) defines the op; the compiled CPU kernels, which never
write the kernel, are checked against it in float64 over random geometries
(kernel 1/3/5/7, stride 1/2, dilation 1/2, groups, odd sizes, reduction
ratios, with and without bias), both memory layouts, every instruction set
this CPU runs and any thread count; then the operator machinery (opcheck,
torch.compile without graph breaks, gradcheck, autocast), bad arguments at
every entry point, and the claim itself: no kernel-sized tensor is allocated.
"""
import pytest
import torch
import torch.nn.functional as F

from mmrednet.ops import cpu, involution_fused, involution_fused_reference

from .fused_helpers import channels_last, fused_problem, outputs_and_grads

needs_library = pytest.mark.skipif(not cpu.AVAILABLE, reason='the op library was not built')

# kernel, stride, dilation, group channels, groups, hidden, size, bias. Contiguous
# problems with output rows of 32 pixels or more run the NCHW kernels, narrower
# ones the channels-last kernels (on copies).
GEOMETRIES = [
    (7, 1, 1, 16, 2, 8, (10, 9), True),     # RedNet's: K=7, 16 channels a group, r=4
    (7, 1, 1, 16, 2, 8, (6, 40), True),
    (7, 2, 1, 16, 2, 8, (13, 70), False),
    (3, 1, 1, 8, 3, 6, (9, 20), True),
    (3, 2, 2, 4, 2, 3, (5, 75), True),
    (5, 1, 2, 3, 2, 5, (4, 37), False),     # channels far from a vector
    (5, 2, 1, 20, 1, 5, (7, 7), True),
    (3, 2, 2, 4, 2, 3, (11, 7), True),
    (1, 1, 1, 4, 2, 2, (5, 6), True),
    (7, 1, 1, 4, 40, 16, (4, 30), True),    # one row of all groups exceeds a tile
    (3, 1, 1, 2, 4, 2, (1, 1), True),       # one pixel
]


def _geometry(kernel, stride, dilation, group_channels, groups, hidden, size, bias,
              dtype=torch.float64, n=2):
    return fused_problem(n=n, c=group_channels * groups, groups=groups, size=size,
                         kernel=kernel, stride=stride, dilation=dilation, hidden=hidden,
                         bias=bias, dtype=dtype)


def _assert_matches(x, h, w, b, kwargs, layout='contiguous', tol=1e-10, dtype=torch.float64):
    out_shape = involution_fused_reference(x.detach(), h.detach(), w.detach(), bias=b,
                                           **kwargs).shape
    grad_out = torch.randn(out_shape, dtype=torch.float64)
    want, want_grads = outputs_and_grads(involution_fused_reference, x, h, w, b, grad_out, kwargs)
    args = [t.detach().to(dtype) if t is not None else None for t in (x, h, w, b)]
    go = grad_out.to(dtype)
    if layout == 'channels_last':
        args[:2], go = channels_last(*args[:2]), channels_last(go)[0]
    got, got_grads = outputs_and_grads(involution_fused, *args, go, kwargs)
    for name, g, r in zip(('output', 'grad input', 'grad hidden', 'grad weight', 'grad bias'),
                          (got, *got_grads), (want, *want_grads), strict=True):
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == dtype, name
        # Relative to the largest value: sums over many pixels cancel.
        atol = tol * max(1.0, r.abs().max().item())
        torch.testing.assert_close(g.double(), r, rtol=tol, atol=atol,
                                   msg=lambda m, name=name: f'{name}: {m}')
    if layout == 'channels_last' and cpu.AVAILABLE:  # the result in the layout of its input
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert got_grads[0].is_contiguous(memory_format=torch.channels_last)
        assert got_grads[1].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('geometry', GEOMETRIES, ids=str)
def test_matches_the_composition_in_float64(geometry, layout):
    x, h, w, b, kwargs = _geometry(*geometry)
    _assert_matches(x, h, w, b, kwargs, layout)


@needs_library
@pytest.mark.parametrize('isa', cpu.supported_isas() if cpu.AVAILABLE else [])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('geometry', GEOMETRIES[:7], ids=str)
def test_every_instruction_set(geometry, dtype, layout, isa):
    before = cpu.isa()
    cpu.set_isa(isa)
    try:
        x, h, w, b, kwargs = _geometry(*geometry)
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        _assert_matches(x, h, w, b, kwargs, layout, tol=tol, dtype=dtype)
    finally:
        cpu.set_isa(before)


@needs_library
@pytest.mark.parametrize('isa', cpu.supported_isas() if cpu.AVAILABLE else [])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_more_vectors_and_taps_than_a_block_of_accumulators(dtype, layout, isa):
    """The kernels' loops keep blocks of up to 8 accumulators: rows of 140 columns
    (9 vectors of 16 lanes, the last partial), 9 taps a kernel row and 10 groups
    of 16 channels (10 vectors a pixel) take full blocks and a remainder in every
    instruction set."""
    before = cpu.isa()
    cpu.set_isa(isa)
    try:
        x, h, w, b, kwargs = _geometry(9, 1, 1, 16, 10, 8, (3, 140), True, n=1)
        tol = 1e-10 if dtype == torch.float64 else 1e-4
        _assert_matches(x, h, w, b, kwargs, layout, tol=tol, dtype=dtype)
    finally:
        cpu.set_isa(before)


def test_random_geometries_match_the_composition():
    gen = torch.Generator().manual_seed(25)

    def pick(*values):
        return values[torch.randint(len(values), (1, ), generator=gen).item()]

    for _ in range(12):
        kernel, stride, dilation = pick(1, 3, 5, 7), pick(1, 2), pick(1, 2)
        group_channels, groups = pick(1, 3, 4, 16), pick(1, 2, 3)
        size = (pick(1, 5, 8, 13), pick(2, 7, 9, 17))
        padding = pick(0, (kernel - 1) // 2 * dilation)
        size = tuple(max(s, dilation * (kernel - 1) + 1 - 2 * padding) for s in size)
        x, h, w, b, kwargs = fused_problem(
            n=pick(1, 2), c=group_channels * groups, groups=groups, size=size, kernel=kernel,
            stride=stride, dilation=dilation, padding=padding,
            hidden=max(1, group_channels * groups // pick(1, 2, 4)), bias=pick(True, False))
        _assert_matches(x, h, w, b, kwargs, pick('contiguous', 'channels_last'))


@needs_library
@pytest.mark.parametrize('width', [18, 40])
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_results_do_not_depend_on_the_thread_count(layout, width):
    # The span weight's gradient sums over every pixel: its partial sums are
    # split by the problem, not by the threads, so results are bitwise equal.
    x, h, w, b, kwargs = fused_problem(n=2, c=32, groups=2, size=(23, width), kernel=7,
                                       hidden=8, dtype=torch.float32, requires_grad=False)
    grad_out = torch.randn(2, 32, 23, width)
    if layout == 'channels_last':
        x, h, grad_out = channels_last(x, h, grad_out)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 3, 5):
            torch.set_num_threads(count)
            results.append(outputs_and_grads(involution_fused, x, h, w, b, grad_out, kwargs))
    finally:
        torch.set_num_threads(threads)
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0], rtol=0, atol=0)
        for got, first in zip(grads, results[0][1], strict=True):
            torch.testing.assert_close(got, first, rtol=0, atol=0)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x, h, w, b, kwargs = fused_problem(n=2, c=32, groups=2, size=(9, 8), kernel=7, hidden=8)
    # Values exact in dtype, so that only the arithmetic differs from the float64 reference.
    x, h, w, b = (t.detach().to(dtype).double() for t in (x, h, w, b))
    _assert_matches(x, h, w, b, kwargs, tol=2e-2 if dtype == torch.float16 else 8e-2,
                    dtype=dtype)


def test_one_dimensional_and_conv_shaped_weights():
    x, h, w, b, kwargs = fused_problem(n=2, c=12, groups=3, size=(17, ), kernel=5, stride=2,
                                       hidden=4)
    _assert_matches(x, h, w, b, kwargs)
    conv1d = involution_fused(x, h, w.unsqueeze(-1), bias=b, **kwargs)  # as nn.Conv1d stores it
    torch.testing.assert_close(conv1d, involution_fused(x, h, w, bias=b, **kwargs))
    x, h, w, b, kwargs = fused_problem(kernel=3)
    conv2d = involution_fused(x, h, w[:, :, None, None], bias=b, **kwargs)  # nn.Conv2d's
    torch.testing.assert_close(conv2d, involution_fused(x, h, w, bias=b, **kwargs))


def test_strided_inputs():
    x, h, w, b, kwargs = fused_problem(n=2, c=8, groups=2, size=(9, 7), kernel=3, hidden=4)
    wide = torch.randn(2, 8, 9, 14, dtype=torch.float64)[..., ::2]
    wide.copy_(x.detach())
    torch.testing.assert_close(
        involution_fused(wide, h, w.t().contiguous().t(), bias=b, **kwargs),
        involution_fused_reference(x, h, w, bias=b, **kwargs))


def test_gradcheck_float64():
    x, h, w, b, kwargs = fused_problem(n=1, c=4, groups=2, size=(5, 4), kernel=3, stride=2,
                                       hidden=3)
    assert torch.autograd.gradcheck(
        lambda *t: involution_fused(t[0], t[1], t[2], bias=t[3], **kwargs), (x, h, w, b))


@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_opcheck(layout):
    x, h, w, b, kwargs = fused_problem(n=2, c=8, groups=2, size=(7, 6), kernel=3, stride=2,
                                       hidden=4, dtype=torch.float32)
    if layout == 'channels_last':
        x, h = (t.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
                for t in (x, h))
    geometry = ([3, 3], [2, 2], [1, 1], [1, 1])
    grad_out = torch.randn(2, 8, 4, 3)
    if layout == 'channels_last':
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)
    ops = torch.ops.mmrednet
    torch.library.opcheck(ops.involution_fused.default, (x, h, w, b, *geometry))
    torch.library.opcheck(ops.involution_fused.default, (x, h, w, None, *geometry))
    plain = [t.detach() for t in (x, h, w, b)]
    torch.library.opcheck(ops.involution_fused_grad_input.default,
                          (grad_out, *plain, *geometry))
    torch.library.opcheck(ops.involution_fused_grad_span.default,
                          (grad_out, *plain[:3], *geometry))


def test_torch_compile_has_no_graph_break():
    x, h, w, b, kwargs = fused_problem(n=2, c=8, groups=2, size=(7, 6), kernel=3, hidden=4,
                                       dtype=torch.float32)

    def layer(x, h, w, b):
        return involution_fused(x, F.relu(h), w, bias=b, **kwargs).sum()

    compiled = torch.compile(layer, backend='aot_eager', fullgraph=True)
    got = torch.autograd.grad(compiled(x, h, w, b), (x, h, w, b))
    want = torch.autograd.grad(layer(x, h, w, b), (x, h, w, b))
    for g, r in zip(got, want, strict=True):
        torch.testing.assert_close(g, r)


def test_autocast_computes_in_the_autocast_dtype():
    x, h, w, b, kwargs = fused_problem(n=1, c=8, groups=2, size=(6, 6), kernel=3, hidden=4,
                                       dtype=torch.float32, requires_grad=False)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = involution_fused(x.bfloat16(), h.bfloat16(), w, bias=b, **kwargs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), involution_fused_reference(x, h, w, bias=b, **kwargs),
                               rtol=0.1, atol=0.1)


def _max_allocation(fn) -> int:
    """The largest single CPU allocation (bytes) while ``fn`` runs: torch's profiler
    records each call of its CPU allocator as a ``[memory]`` event (scratch of the
    C++ kernels included: they allocate through torch)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes = [abs(e.nbytes()) for e in prof.profiler.kineto_results.events()
             if e.name() == '[memory]']
    assert sizes, 'the profiler recorded no allocation'
    return max(sizes)


@needs_library
@pytest.mark.parametrize('layout', ['contiguous', 'channels_last'])
def test_the_kernel_is_never_allocated(layout):
    # RedNet-50's first stage at 224: the kernel (2 x 196 x 56 x 56 floats, 4.9 MB)
    # is three times the input; the fused op's largest allocation must be a
    # fraction of it (the output, the input's size, is the largest), in forward
    # and backward. The composition is measured too, so that the probe is shown
    # to see a kernel when one is written.
    x, h, w, b, kwargs = fused_problem(n=2, c=64, groups=4, size=(56, 56), kernel=7, hidden=16,
                                       dtype=torch.float32)
    if layout == 'channels_last':
        x, h = (t.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
                for t in (x, h))
    kernel_bytes = 2 * 4 * 49 * 56 * 56 * 4
    input_bytes = x.numel() * 4

    def fused():
        involution_fused(x, h, w, bias=b, **kwargs).sum().backward()

    def composition():
        kernel = F.conv2d(h, w[:, :, None, None], b).unflatten(1, (4, 7, 7))
        torch.ops.mmrednet.involution(x, kernel, [1, 1], [3, 3], [1, 1]).sum().backward()

    assert _max_allocation(composition) >= kernel_bytes
    largest = _max_allocation(fused)
    assert largest <= input_bytes < kernel_bytes / 2, (largest, input_bytes, kernel_bytes)


# Bad arguments: (what to change, words the error must contain). Each is tried at
# the functional entry and at the three ops (direct calls and their fake kernels).
def _bad_cases():
    x, h, w, b, _ = fused_problem(n=2, c=8, groups=2, size=(7, 6), kernel=3, hidden=4,
                                  dtype=torch.float32, requires_grad=False)
    ok = dict(x=x, h=h, w=w, b=b, g=torch.randn(2, 8, 7, 6), k=[3, 3], s=[1, 1], p=[1, 1],
              d=[1, 1])
    return ok, {
        'hidden batch': (dict(h=h[:1]), 'hidden batch size'),
        'hidden channels': (dict(h=h[:, :3]), 'hidden channels'),
        'hidden spatial': (dict(h=h[..., :5]), 'hidden spatial size'),
        'hidden no channel': (dict(h=h[:, :0], w=w[:, :0]), 'at least one channel'),
        'hidden rank': (dict(h=h[0]), 'hidden must be'),
        'hidden dtype': (dict(h=h.double()), 'hidden dtype'),
        'hidden device': (dict(h=h.to('meta')), 'hidden is on'),
        'weight rows': (dict(w=w[:10]), 'weight.shape[0]'),
        'weight rank': (dict(w=w[None]), 'weight must be'),
        'weight dtype': (dict(w=w.double()), 'weight dtype'),
        'weight device': (dict(w=w.to('meta')), 'weight is on'),
        'groups': (dict(w=torch.randn(27, 4), b=torch.randn(27)), 'must divide the input'),
        'bias shape': (dict(b=b[:5]), 'bias must be'),
        'bias dtype': (dict(b=b.double()), 'bias dtype'),
        'bias device': (dict(b=b.to('meta')), 'bias is on'),
        'input rank': (dict(x=x[0]), 'input must be'),
        'input dtype': (dict(x=x.long(), h=h.long(), w=w.long(), b=b.long(),
                             g=torch.ones(2, 8, 7, 6, dtype=torch.long)), 'floating point'),
        'kernel_size': (dict(k=[0, 3]), 'kernel_size'),
        'kernel_size length': (dict(k=[3]), 'kernel_size'),
        'stride': (dict(s=[0, 1]), 'stride'),
        'padding': (dict(p=[-1, 1]), 'padding'),
        'dilation': (dict(d=[1, 0]), 'dilation'),
        'too small': (dict(p=[0, 0], x=x[..., :1, :]), 'too small'),
        'stride bound': (dict(s=[2**40, 1]), 'stride must be <='),
        'padded problem': (dict(p=[2**20, 2**20]), 'padded problem'),
        'grad_output shape': (dict(g=torch.randn(2, 8, 7, 5)), 'grad_output'),
        'grad_output dtype': (dict(g=torch.randn(2, 8, 7, 6).double()), 'grad_output dtype'),
    }


def _calls(a):
    ops = torch.ops.mmrednet
    geometry = (a['k'], a['s'], a['p'], a['d'])
    return {
        'involution_fused': lambda: ops.involution_fused(a['x'], a['h'], a['w'], a['b'],
                                                         *geometry),
        'involution_fused_grad_input': lambda: ops.involution_fused_grad_input(
            a['g'], a['x'], a['h'], a['w'], a['b'], *geometry),
        'involution_fused_grad_span': lambda: ops.involution_fused_grad_span(
            a['g'], a['x'], a['h'], a['w'], *geometry),
    }


BAD_OK, BAD = _bad_cases()


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_arguments_are_clear_errors_at_every_entry(case):
    change, words = BAD[case]
    a = dict(BAD_OK, **change)
    for name, call in _calls(a).items():
        if name == 'involution_fused_grad_span' and case.startswith('bias'):
            continue  # takes no bias
        if name == 'involution_fused' and case.startswith('grad_output'):
            continue
        with pytest.raises((ValueError, TypeError), match=words.replace('[', r'\[')):
            call()
        if 'device' not in case:  # a meta tensor is a fake's own device
            from torch._subclasses.fake_tensor import FakeTensorMode
            with FakeTensorMode(allow_non_fake_inputs=True) as mode:
                fake = {k: mode.from_tensor(v) if isinstance(v, torch.Tensor) else v
                        for k, v in a.items()}
                with pytest.raises((ValueError, TypeError), match=words.replace('[', r'\[')):
                    _calls(fake)[name]()
    if case.startswith('grad_output') or case.endswith('length') or case.endswith('rank'):
        return
    with pytest.raises((ValueError, TypeError), match=words.replace('[', r'\[')):
        involution_fused(a['x'], a['h'], a['w'], bias=a['b'], kernel_size=a['k'],
                         stride=a['s'], padding=a['p'], dilation=a['d'])


def test_functional_rejects_other_weight_shapes_and_types():
    x, h, w, b, kwargs = fused_problem(kernel=3)
    with pytest.raises(ValueError, match=r"1x1 convolution's"):
        involution_fused(x, h, w[:, :, None, None].expand(-1, -1, 3, 3), **kwargs)
    with pytest.raises(TypeError, match='bias must be a tensor or None'):
        involution_fused(x, h, w, bias=[1.0], **kwargs)
    with pytest.raises(TypeError, match='must be tensors'):
        involution_fused(x, h.tolist(), w, **kwargs)
