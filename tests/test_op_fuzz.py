"""Fuzzing every involution entry point: the reference result or a clear error, never a crash.

Seeded random problems (1-D and 2-D, shapes, strides, padding, dilation,
groups, dtypes fp64/fp32/fp16/bf16, contiguous, channels-last and strided
inputs, empty batches and channels) and deliberate mismatches (batch, groups,
kernel and output sizes, ranks, geometry lengths and values, dtypes, devices,
grad_output's shape and dtype, empty inputs) go into ``involution``, the
``Involution`` layers, each ``torch.ops.mmrednet.*`` op and its fake kernel
(what ``torch.compile`` traces with). A valid problem must give the reference
result within the dtype's tolerance; a mismatch must raise ValueError,
TypeError or RuntimeError naming the parameter.

A wrong shape used to reach the kernels unchecked (an out-of-bounds read, or a
heap corruption that aborts the process), so the cases run in a subprocess:
a crash fails the test, naming the case, instead of killing pytest. The
portable path (every device without its own kernel, and the CPU without the
op library) runs the same cases with the op library switched off.
"""
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional, Tuple

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# Largest error allowed, relative to the largest reference value (at least 1).
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
# Mismatch kind -> (which entry points it applies to, words the error must contain).
MISMATCHES = {
    'batch': ('all', 'batch size'),
    'groups_not_dividing': ('all', 'groups'),
    'zero_groups': ('all', 'groups'),
    'zero_kernel': ('all', 'kernel size'),
    'output_size': ('all', 'output size'),
    'weight_rank': ('all', 'weight must be'),
    'input_rank': ('all', 'input must be'),
    'stride_length': ('all', 'stride'),
    'zero_stride': ('all', 'stride'),
    'negative_padding': ('all', 'padding'),
    'zero_dilation': ('all', 'dilation'),
    'dtype': ('all', 'dtype'),
    'integer_dtype': ('all', 'floating point'),
    'device': ('all', 'device'),
    'empty_spatial': ('all', 'spatial size'),
    'grad_output_shape': ('grad', 'grad_output'),
    'grad_output_dtype': ('grad', 'grad_output'),
}


@dataclass
class Case:
    index: int
    ndim: int
    batch: int
    groups: int
    group_channels: int
    size: Tuple[int, ...]
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    dtype: torch.dtype
    layout: str  # contiguous, channels_last (2-D only) or strided
    mismatch: Optional[str] = None

    @property
    def out_size(self) -> Tuple[int, ...]:
        return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(
            self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True))

    def describe(self) -> str:
        return (f'case {self.index}: {self.ndim}-D n={self.batch} G={self.groups} '
                f'C={self.groups * self.group_channels} size={self.size} K={self.kernel} '
                f's={self.stride} p={self.padding} d={self.dilation} {self.dtype} '
                f'{self.layout} mismatch={self.mismatch}')


def make_cases(seed: int, count: int) -> List[Case]:
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        ndim = rng.choice((1, 2))
        kernel = tuple(rng.choice((1, 2, 3, 5, 7)) for _ in range(ndim))
        stride = tuple(rng.randint(1, 3) for _ in range(ndim))
        dilation = tuple(rng.randint(1, 2) for _ in range(ndim))
        padding = tuple(rng.randint(0, (k - 1) * d) for k, d in zip(kernel, dilation, strict=True))
        # Big enough for one output pixel at least.
        size = tuple(max(rng.randint(1, 11), d * (k - 1) + 1 - 2 * p)
                     for k, p, d in zip(kernel, padding, dilation, strict=True))
        batch = rng.choice((0, 1, 1, 2, 3)) if rng.random() < 0.9 else 0
        group_channels = rng.choice((0, 1, 2, 3, 5, 8)) if rng.random() < 0.95 else 0
        layout = rng.choice(('contiguous', 'channels_last', 'strided') if ndim == 2 else
                            ('contiguous', 'strided'))
        mismatch = rng.choice(sorted(MISMATCHES)) if rng.random() < 0.4 else None
        cases.append(Case(index, ndim, batch, rng.randint(1, 4), group_channels, size, kernel,
                          stride, padding, dilation, rng.choice(DTYPES), layout, mismatch))
    return cases


def _strided(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a non-contiguous view: every other element of a tensor twice as wide."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


def _in_layout(x, w, grad_out, layout):
    if layout == 'channels_last':
        cl = torch.channels_last
        return (x.contiguous(memory_format=cl),
                w.permute(0, 4, 5, 1, 2, 3).contiguous().permute(0, 3, 4, 5, 1, 2),
                grad_out.contiguous(memory_format=cl))
    if layout == 'strided':
        return _strided(x), _strided(w), _strided(grad_out)
    return x, w, grad_out


def _problem(case: Case, device: str):
    """Input, kernel and grad_output in float64 (values exactly representable in the case's
    dtype), and the geometry, for the case without its mismatch."""
    gen = torch.Generator().manual_seed(case.index)
    c = case.groups * case.group_channels

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(case.dtype).double()

    x = rand(case.batch, c, *case.size)
    w = rand(case.batch, case.groups, *case.kernel, *case.out_size)
    grad_out = rand(case.batch, c, *case.out_size)
    return x.to(device), w.to(device), grad_out.to(device)


def _reference(x, w, grad_out, case: Case):
    """Forward and both gradients by the reference implementation (float64, on the CPU)."""
    from mmrednet.ops import involution_reference
    x, w, grad_out = x.cpu(), w.cpu(), grad_out.cpu()
    if x.numel() == 0:  # nothing to sum: zeros of the output's and inputs' shapes
        return grad_out.new_zeros(grad_out.shape), x.new_zeros(x.shape), w.new_zeros(w.shape)
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    out = involution_reference(x, w, case.stride, case.padding, case.dilation)
    return (out.detach(), *torch.autograd.grad(out, (x, w), grad_out))


def _to_2d(x, w, grad_out, case: Case):
    """The ops' canonical 2-D layout: a 1-D problem has a height of one."""
    if case.ndim == 1:
        x, grad_out = x.unsqueeze(2), grad_out.unsqueeze(2)
        w = w.unsqueeze(2).unsqueeze(4)
        geometry = ([1, *case.stride], [0, *case.padding], [1, *case.dilation])
    else:
        geometry = (list(case.stride), list(case.padding), list(case.dilation))
    return x, w, grad_out, geometry


def _close(got: torch.Tensor, want: torch.Tensor, case: Case, what: str) -> None:
    assert got.shape == want.shape, f'{what}: shape {tuple(got.shape)} != {tuple(want.shape)}'
    assert got.dtype == case.dtype, f'{what}: dtype {got.dtype} != {case.dtype}'
    if want.numel():
        error = (got.double().cpu() - want).abs().max().item()
        bound = TOLERANCE[case.dtype] * max(1.0, want.abs().max().item())
        assert error <= bound, f'{what}: max error {error:.3g} > {bound:.3g}'


def _mismatched(case: Case, x, w, grad_out, geometry):
    """The ops' arguments (2-D layout) with the case's mismatch planted."""
    stride, padding, dilation = (list(v) for v in geometry)
    kind = case.mismatch
    if kind == 'batch':
        w = torch.cat([w, w.new_ones(1, *w.shape[1:])])
    elif kind == 'groups_not_dividing':
        c = x.shape[1]
        w = w.new_ones(w.shape[0], c + 1 if c else 3, *w.shape[2:])
        if c == 0:  # 3 groups do divide 0 channels: give the input channels instead
            x = x.new_ones(x.shape[0], 2, *x.shape[2:])
            grad_out = grad_out.new_ones(x.shape[0], 2, *grad_out.shape[2:])
    elif kind == 'zero_groups':
        w = w.new_ones(w.shape[0], 0, *w.shape[2:])
    elif kind == 'zero_kernel':
        w = w.new_ones(*w.shape[:3], 0, *w.shape[4:])
    elif kind == 'output_size':
        w = w.new_ones(*w.shape[:5], w.shape[5] + 1)
    elif kind == 'weight_rank':
        w = w.flatten(4)
    elif kind == 'input_rank':
        x = x.flatten(2)
    elif kind == 'stride_length':
        stride = stride + [1]
    elif kind == 'zero_stride':
        stride[1] = 0
    elif kind == 'negative_padding':
        padding[1] = -1
    elif kind == 'zero_dilation':
        dilation[1] = 0
    elif kind == 'dtype':
        w = w.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    elif kind == 'integer_dtype':
        x, w, grad_out = x.long(), w.long(), grad_out.long()
    elif kind == 'device':
        w = w.to('meta')
    elif kind == 'empty_spatial':
        x = x[..., :0]
    elif kind == 'grad_output_shape':
        grad_out = grad_out.new_ones(*grad_out.shape[:3], grad_out.shape[3] + 1)
    elif kind == 'grad_output_dtype':
        grad_out = grad_out.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    return x, w, grad_out, (stride, padding, dilation)


def _expect_error(fn, what: str, words: str) -> None:
    try:
        fn()
    except (ValueError, TypeError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else ''
        assert words in str(exc), f'{what}: error does not name {words!r}: {message}'
        return
    raise AssertionError(f'{what}: no error (expected one naming {words!r})')


def _ops(x, w, grad_out, geometry):
    ops = torch.ops.mmrednet
    return {
        'torch.ops.mmrednet.involution': lambda: ops.involution(x, w, *geometry),
        'torch.ops.mmrednet.involution_grad_input':
        lambda: ops.involution_grad_input(grad_out, x, w, *geometry),
        'torch.ops.mmrednet.involution_grad_weight':
        lambda: ops.involution_grad_weight(grad_out, x, w, *geometry),
    }


def _fake(fn_args):
    """Run an op call with fake tensors (as torch.compile traces it)."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        return fn_args(mode)


def check_case(case: Case, device: str) -> None:
    """Every entry point on one case; raises AssertionError saying what went wrong."""
    from mmrednet.ops import involution
    x, w, grad_out = _problem(case, device)
    want = _reference(x, w, grad_out, case)
    x, w, grad_out = (t.to(case.dtype) for t in _in_layout(x, w, grad_out, case.layout))
    geometry = (case.stride, case.padding, case.dilation)
    x2, w2, g2, geometry2 = _to_2d(x, w, grad_out, case)
    if case.mismatch is None:
        _close(involution(x, w, *geometry), want[0], case, 'involution')
        for (what, call), ref in zip(_ops(x2, w2, g2, geometry2).items(), want, strict=True):
            got = call()
            _close(got.view(ref.shape) if case.ndim == 1 else got, ref, case, what)
            fake = _fake(lambda mode, what=what: _ops(*(mode.from_tensor(t) for t in (
                x2, w2, g2)), geometry2)[what]())
            assert fake.shape == got.shape and fake.dtype == got.dtype, f'fake {what}'
            assert fake.stride() == got.stride(), f'fake {what}: strides {fake.stride()} != ' \
                                                  f'{got.stride()}'
        return
    scope, words = MISMATCHES[case.mismatch]
    bx, bw, bg, bgeo = _mismatched(case, x2, w2, g2, geometry2)
    for what, call in _ops(bx, bw, bg, bgeo).items():
        if scope == 'grad' and what.endswith('.involution'):
            continue
        _expect_error(call, what, words)
        if case.mismatch != 'device':
            _expect_error(lambda what=what: _fake(lambda mode: _ops(*(
                mode.from_tensor(t) for t in (bx, bw, bg)), bgeo)[what]()), f'fake {what}',
                          words)
    if scope == 'all' and case.mismatch not in ('input_rank', 'weight_rank', 'stride_length'):
        # The functional entry, in the caller's 1-D or 2-D layout.
        fx, fw = (bx.squeeze(2), bw.squeeze(4).squeeze(2)) if case.ndim == 1 else (bx, bw)
        fgeo = tuple(v[-case.ndim:] for v in bgeo)
        _expect_error(lambda: involution(fx, fw, *fgeo), 'involution', words)


# Geometry at and past the bounds: a stride, padding or dilation value is at most 2^31 - 1,
# the padded problem (C + G * Kh * Kw) * (H + 2 * pad_h) * (W + 2 * pad_w) at most 2^40
# values; values near 2^31, 2^62 and INT64_MAX, and products that overflow 64 bits.
MAX_GEOMETRY, MAX_PADDED_PROBLEM = 2**31 - 1, 2**40
EXTREMES = (2**31 - 2, 2**31 - 1, 2**31, 2**32 + 1, 2**55, 2**60, 2**62, 2**63 - 1)
EXTREME_KINDS = ('stride', 'padding', 'dilation', 'two', 'issue', 'kernel', 'channels',
                 'in_bounds')


@dataclass
class ExtremeCase:
    case: Case
    expand: Optional[str] = None  # 'kernel' or 'channels': a huge stride-0 axis

    def expected_error(self) -> Optional[str]:
        """Words the error must contain, from the bounds (exact integers); None: valid."""
        c = self.case
        for name in ('stride', 'padding', 'dilation'):
            if max(getattr(c, name)) > MAX_GEOMETRY:
                return name
        if self.expand:
            return 'padded problem'
        kernel, size, padding = (((1, ) + t)[-2:] for t in (c.kernel, c.size, c.padding))
        padded = [s + 2 * p for s, p in zip(size, padding, strict=True)]
        if ((c.groups * c.group_channels + c.groups * kernel[0] * kernel[1]) * padded[0] *
                padded[1] > MAX_PADDED_PROBLEM):
            return 'padded problem'
        if min(c.out_size) < 1:
            return 'too small'
        return None


def make_extreme_cases(seed: int, count: int) -> List[ExtremeCase]:
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        kind = rng.choice(EXTREME_KINDS)
        value = rng.choice(EXTREMES)
        # Padding within the bound is refused only as a product: both axes of a 2-D problem.
        ndim = 2 if kind == 'padding' and value <= MAX_GEOMETRY else rng.choice((1, 2))
        geometry = {
            'stride': [rng.randint(1, 2) for _ in range(ndim)],
            'padding': [rng.randint(0, 1) for _ in range(ndim)],
            'dilation': [rng.randint(1, 2) for _ in range(ndim)],
        }
        kernel = [rng.choice((1, 3)) for _ in range(ndim)]
        axes = rng.choice([(a, ) for a in range(ndim)] + [tuple(range(ndim))])
        if kind == 'padding' and value <= MAX_GEOMETRY:
            axes = (0, 1)
        if kind in geometry:
            for a in axes:
                geometry[kind][a] = value
        elif kind == 'in_bounds':  # valid: one output along the stride, or one tap dilated
            name = rng.choice(('stride', 'dilation'))
            for a in axes:
                geometry[name][a] = rng.choice((2**31 - 2, MAX_GEOMETRY))
                kernel[a] = 1 if name == 'dilation' else kernel[a]
        elif kind == 'two':  # two of the three at once: the first one checked is named
            for name in rng.sample(sorted(geometry), 2):
                geometry[name][axes[0]] = rng.choice(EXTREMES)
        elif kind == 'issue':  # a stride of 2^24 with a dilation of 2^55 used to segfault
            geometry['stride'][axes[0]], geometry['dilation'][axes[0]] = 2**24, 2**55
        case = Case(index, ndim, rng.choice((0, 1, 2)), rng.randint(1, 2), rng.randint(1, 3),
                    tuple(rng.randint(5, 9) for _ in range(ndim)), tuple(kernel),
                    tuple(geometry['stride']), tuple(geometry['padding']),
                    tuple(geometry['dilation']), rng.choice((torch.float64, torch.float32)),
                    'contiguous', 'extreme')
        cases.append(ExtremeCase(case, kind if kind in ('kernel', 'channels') else None))
    return cases


def check_extreme_case(extreme: ExtremeCase, device: str) -> None:
    """Every entry point on one case of extreme geometry: the reference or the error
    naming the parameter, and never an attempt to allocate what the geometry implies."""
    from mmrednet.ops import involution
    case, words = extreme.case, extreme.expected_error()
    if words is None:  # valid: one output pixel along a huge stride, or a 1-tap huge dilation
        check_case(Case(**{**case.__dict__, 'mismatch': None}), device)
        return
    c = case.groups * case.group_channels
    x = torch.randn(case.batch, c, *case.size, dtype=case.dtype, device=device)
    # The error comes before the output size is compared: any kernel grid does.
    w = torch.randn(case.batch, case.groups, *case.kernel, *(1, ) * case.ndim,
                    dtype=case.dtype, device=device)
    if extreme.expand == 'kernel':
        w = w.new_zeros(()).expand(case.batch, case.groups, 2**40, *w.shape[3:])
    elif extreme.expand == 'channels':
        x = x.new_zeros(()).expand(case.batch, 2**40, *case.size)
    grad_out = x.new_zeros(()).expand(*x.shape[:2], *(1, ) * case.ndim)
    x2, w2, g2, geometry2 = _to_2d(x, w, grad_out, case)
    for what, call in _ops(x2, w2, g2, geometry2).items():
        _expect_error(call, what, words)
        _expect_error(lambda what=what: _fake(lambda mode: _ops(*(
            mode.from_tensor(t) for t in (x2, w2, g2)), geometry2)[what]()), f'fake {what}',
                      words)
    _expect_error(lambda: involution(x, w, case.stride, case.padding, case.dilation),
                  'involution', words)


LAYER_MISMATCHES = {'channels': 'channels', 'rank': 'dims', 'empty_spatial': 'spatial size'}


def check_layer_case(rng: random.Random, index: int, device: str) -> None:
    """One ``Involution``/``Involution1d`` layer against the reference on its own kernel."""
    from mmrednet.models import Involution, Involution1d
    from mmrednet.ops import involution_reference
    ndim = rng.choice((1, 2))
    group_channels, groups = rng.choice((1, 2, 4)), rng.choice((1, 2, 3))
    channels = group_channels * groups * 2
    kernel, stride, dilation = rng.choice((1, 3, 5, 7)), rng.randint(1, 2), rng.randint(1, 2)
    layer = {1: Involution1d, 2: Involution}[ndim](
        channels, kernel_size=kernel, stride=stride, dilation=dilation, bias=rng.random() < .5,
        group_channels=group_channels, reduction_ratio=2,
        regenerate_kernel=rng.random() < .5).double().to(device).eval()  # BN: running stats
    size = tuple(rng.randint(1, 9) for _ in range(ndim))
    x = torch.randn(rng.randint(1, 3), channels, *size, dtype=torch.float64, device=device)
    if ndim == 2 and rng.random() < .5:
        x = x.contiguous(memory_format=torch.channels_last)
    mismatch = rng.choice(sorted(LAYER_MISMATCHES)) if rng.random() < .3 else None
    what = f'layer case {index}: {type(layer).__name__}({layer.extra_repr()}) x={tuple(x.shape)}'
    if mismatch:
        bad = {'channels': x[:, 1:], 'rank': x.unsqueeze(-1), 'empty_spatial': x[..., :0]}
        _expect_error(lambda: layer(bad[mismatch]), what, LAYER_MISMATCHES[mismatch])
        return
    x.requires_grad_()
    out = layer(x)
    grads = torch.autograd.grad(out.sum(), (x, layer.conv2.conv.weight))
    x_ref = x.detach().clone().requires_grad_()
    ref = involution_reference(x_ref, layer.generate_kernel(x_ref), layer.stride,
                               layer.padding, layer.dilation)
    if layer.bias is not None:
        ref = ref + layer.bias.view(-1, *(1, ) * ndim)
    ref_grads = torch.autograd.grad(ref.sum(), (x_ref, layer.conv2.conv.weight))
    for name, got, exp in zip(('output', 'grad x', 'grad conv2'), (out, *grads),
                              (ref, *ref_grads), strict=True):
        torch.testing.assert_close(got, exp, msg=lambda m, name=name: f'{what}: {name}: {m}')


def main(seed: int, count: int, layer_count: int, device: str, extreme_count: int = 0) -> None:
    """Run the cases, printing each before it runs (the last line names a crashing case) and a
    JSON summary at the end."""
    torch.manual_seed(seed)
    failures, counts = [], {'valid': 0, 'mismatch': 0, 'layer': 0, 'extreme_valid': 0,
                            'extreme_error': 0}
    for case in make_cases(seed, count):
        print('RUN', case.describe(), flush=True)
        try:
            check_case(case, device)
        except Exception as exc:  # an unexpected error in a valid case fails it too
            failures.append(f'{case.describe()}: {type(exc).__name__}: {exc}'.splitlines()[0])
        counts['valid' if case.mismatch is None else 'mismatch'] += 1
    for extreme in make_extreme_cases(seed, extreme_count):
        what = f'{extreme.case.describe()} expand={extreme.expand}'
        print('RUN', what, flush=True)
        try:
            check_extreme_case(extreme, device)
        except Exception as exc:
            failures.append(f'{what}: {type(exc).__name__}: {exc}'.splitlines()[0])
        counts['extreme_valid' if extreme.expected_error() is None else 'extreme_error'] += 1
    rng = random.Random(seed)
    for index in range(layer_count):
        print('RUN layer case', index, flush=True)
        try:
            check_layer_case(rng, index, device)
        except Exception as exc:
            failures.append(f'layer case {index}: {type(exc).__name__}: {exc}'.splitlines()[0])
        counts['layer'] += 1
    print('SUMMARY', json.dumps(dict(counts=counts, failures=failures)), flush=True)


def _run(device: str, count: int, layer_count: int, library: bool,
         extreme_count: int = 0) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    if not library:
        env['MMREDNET_WITH_EXT'] = '0'
    code = (f'from tests.test_op_fuzz import main; '
            f'main(0, {count}, {layer_count}, {device!r}, {extreme_count})')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # a crash is reported below
    lines = proc.stdout.splitlines()
    last = next((line for line in reversed(lines) if line.startswith('RUN')), 'before any case')
    assert proc.returncode == 0, (f'the fuzz run died (status {proc.returncode}) in {last}\n'
                                  f'{proc.stderr[-3000:]}')
    summary = json.loads(lines[-1].removeprefix('SUMMARY '))
    assert not summary['failures'], '\n'.join(summary['failures'][:20])
    return summary['counts']


def test_batch_mismatch_is_an_error_not_garbage_or_a_crash():
    # Issue 17: a batch-4 input with a batch-1 kernel read out of bounds in the forward op
    # and corrupted the heap (or raised SIGFPE) in involution_grad_weight.
    code = '''
import torch
import mmrednet.ops
x, w, g = torch.randn(4, 8, 5, 5), torch.randn(1, 2, 3, 3, 5, 5), torch.randn(4, 8, 5, 5)
geometry = ([1, 1], [1, 1], [1, 1])
ops = torch.ops.mmrednet
for name, args in (('involution', (x, w)), ('involution_grad_input', (g, x, w)),
                   ('involution_grad_weight', (g, x, w))):
    try:
        getattr(ops, name)(*args, *geometry)
    except ValueError as exc:
        print(name, 'ValueError', 'batch size 1 must equal input batch size 4' in str(exc))
    else:
        print(name, 'no error')
'''
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f'crashed (status {proc.returncode}): {proc.stderr[-2000:]}'
    assert proc.stdout.splitlines() == [f'{name} ValueError True' for name in (
        'involution', 'involution_grad_input', 'involution_grad_weight')], proc.stdout


def test_every_cpu_entry_point_gives_the_reference_or_a_clear_error():
    counts = _run('cpu', count=300, layer_count=30, library=True)
    assert counts['valid'] > 120 and counts['mismatch'] > 80 and counts['layer'] == 30


def test_extreme_geometry_gives_the_reference_or_a_clear_error():
    # Huge values used to wrap the kernels' sizes: a segfault (stride 2^24, dilation 2^55),
    # about 4x the right result (padding and dilation near 2^60), petabyte allocations.
    counts = _run('cpu', count=0, layer_count=0, library=True, extreme_count=120)
    assert counts['extreme_valid'] > 10 and counts['extreme_error'] > 80


def test_portable_path_gives_the_reference_or_a_clear_error():
    # The kernels registered from Python (every device but the CPU with the op library).
    counts = _run('cpu', count=120, layer_count=0, library=False, extreme_count=40)
    assert counts['valid'] > 40 and counts['mismatch'] > 30 and counts['extreme_error'] > 20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_every_cuda_entry_point_gives_the_reference_or_a_clear_error():
    counts = _run('cuda', count=200, layer_count=20, library=True)
    assert counts['valid'] > 80 and counts['mismatch'] > 50


def test_fuzz_cases_cover_every_mismatch_dtype_and_layout():
    cases = make_cases(0, 300)
    assert {c.mismatch for c in cases} == {None, *MISMATCHES}
    valid = [c for c in cases if c.mismatch is None]
    assert {c.dtype for c in valid} == set(DTYPES)
    assert {(c.ndim, c.layout) for c in valid} == {(1, 'contiguous'), (1, 'strided'),
                                                   (2, 'contiguous'), (2, 'strided'),
                                                   (2, 'channels_last')}
    assert any(c.batch == 0 for c in valid) and any(c.group_channels == 0 for c in valid)


def test_extreme_cases_cover_every_bound():
    cases = make_extreme_cases(0, 120)
    assert {e.expected_error() for e in cases} == {None, 'stride', 'padding', 'dilation',
                                                   'padded problem', 'too small'}
    values = {v for e in cases for name in ('stride', 'padding', 'dilation')
              for v in getattr(e.case, name)}
    assert set(EXTREMES) <= values and {e.expand for e in cases} == {None, 'kernel', 'channels'}
    # Within the value bounds, a product past 2^63: the padded problem must be refused.
    assert any(e.expected_error() == 'padded problem' and max(e.case.padding) == MAX_GEOMETRY
               for e in cases)
