"""Fuzzing the fused op's entry points: the composition's result or a clear error, never a crash.

Seeded random problems (1-D and 2-D, shapes, strides, padding, dilation,
groups, hidden channels, with and without bias, the span weight as a matrix or
as a 1x1 convolution stores it, dtypes fp64/fp32/fp16/bf16, contiguous,
channels-last and strided inputs, empty batches and channels) and deliberate
mismatches between input, hidden, weight, bias, grad_output and the geometry
go into ``involution_fused``, each ``torch.ops.mmrednet.involution_fused*`` op
and its fake kernel. A valid problem must give the composition's output and
gradients within the dtype's tolerance; a mismatch must raise ValueError,
TypeError or RuntimeError naming the parameter. In a subprocess, so that a
crash fails the test naming the case; the portable path (the composition,
every device without a fused kernel) runs the same cases without the library.
"""
import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
# Largest error allowed, relative to the largest reference value (at least 1).
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
# Mismatch kind -> (entry points it applies to, words the error must contain).
MISMATCHES = {
    'hidden_batch': ('all', 'hidden batch size'),
    'hidden_channels': ('all', 'hidden channels'),
    'hidden_spatial': ('all', 'hidden spatial size'),
    'hidden_rank': ('all', 'hidden must be'),
    'weight_rows': ('all', 'weight.shape[0]'),
    'weight_rank': ('ops', 'weight must be'),
    'groups_not_dividing': ('all', 'must divide the input channels'),
    'bias_shape': ('bias', 'bias must be'),
    'hidden_dtype': ('all', 'hidden dtype'),
    'bias_dtype': ('bias', 'bias dtype'),
    'integer_dtype': ('all', 'floating point'),
    'weight_device': ('all', 'weight is on'),
    'zero_kernel': ('all', 'kernel_size'),
    'stride_length': ('ops', 'stride'),
    'zero_stride': ('all', 'stride'),
    'negative_padding': ('all', 'padding'),
    'zero_dilation': ('all', 'dilation'),
    'input_rank': ('ops', 'input must be'),
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
    hidden: int
    size: Tuple[int, ...]
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    padding: Tuple[int, ...]
    dilation: Tuple[int, ...]
    bias: bool
    conv_weight: bool  # the span weight as nn.Conv2d/Conv1d stores it
    dtype: torch.dtype
    layout: str  # contiguous, channels_last (2-D only) or strided
    mismatch: Optional[str] = None

    @property
    def out_size(self) -> Tuple[int, ...]:
        return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, st, p, d in zip(
            self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True))

    @property
    def rows(self) -> int:
        taps = 1
        for k in self.kernel:
            taps *= k
        return self.groups * taps

    def describe(self) -> str:
        return (f'case {self.index}: {self.ndim}-D n={self.batch} G={self.groups} '
                f'C={self.groups * self.group_channels} hidden={self.hidden} size={self.size} '
                f'K={self.kernel} s={self.stride} p={self.padding} d={self.dilation} '
                f'bias={self.bias} conv_weight={self.conv_weight} {self.dtype} {self.layout} '
                f'mismatch={self.mismatch}')


def make_cases(seed: int, count: int):
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        ndim = rng.choice((1, 2))
        kernel = tuple(rng.choice((1, 2, 3, 5, 7)) for _ in range(ndim))
        stride = tuple(rng.randint(1, 3) for _ in range(ndim))
        dilation = tuple(rng.randint(1, 2) for _ in range(ndim))
        padding = tuple(rng.randint(0, (k - 1) * d) for k, d in zip(kernel, dilation, strict=True))
        # Rows of 32 output pixels or more run the NCHW kernels: some wide ones.
        widest = 11 if rng.random() < 0.8 else 80
        size = tuple(max(rng.randint(1, 11 if axis < ndim - 1 else widest),
                         d * (k - 1) + 1 - 2 * p)
                     for axis, (k, p, d) in enumerate(zip(kernel, padding, dilation,
                                                          strict=True)))
        batch = rng.choice((0, 1, 1, 2, 3)) if rng.random() < 0.9 else 0
        group_channels = rng.choice((0, 1, 2, 3, 5, 8)) if rng.random() < 0.95 else 0
        layout = rng.choice(('contiguous', 'channels_last', 'strided') if ndim == 2 else
                            ('contiguous', 'strided'))
        mismatch = rng.choice(sorted(MISMATCHES)) if rng.random() < 0.4 else None
        bias = rng.random() < 0.6 or mismatch in ('bias_shape', 'bias_dtype')
        cases.append(Case(index, ndim, batch, rng.randint(1, 4), group_channels,
                          rng.randint(1, 6), size, kernel, stride, padding, dilation, bias,
                          rng.random() < 0.3, rng.choice(DTYPES), layout, mismatch))
    return cases


def _strided(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a non-contiguous view: every other element of a tensor twice as wide."""
    wide = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    wide[..., ::2] = t
    return wide[..., ::2]


def _in_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == 'channels_last' and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if layout == 'strided' and t.dim() >= 2:
        return _strided(t)
    return t


def _problem(case: Case):
    """Input, hidden, span weight (2-D), bias and grad_output in float64 (values exact in
    the case's dtype), for the case without its mismatch."""
    gen = torch.Generator().manual_seed(case.index)

    def rand(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return t.to(case.dtype).double()

    c = case.groups * case.group_channels
    x = rand(case.batch, c, *case.size)
    h = rand(case.batch, case.hidden, *case.out_size)
    w = rand(case.rows, case.hidden, scale=case.hidden**-0.5)
    b = rand(case.rows) if case.bias else None
    grad_out = rand(case.batch, c, *case.out_size)
    return x, h, w, b, grad_out


def _reference(x, h, w, b, grad_out, case: Case):
    """Output and the gradients of x, h, w, b by the composition (float64)."""
    from mmrednet.ops import involution_fused_reference
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, h, w, b)]
    if x.numel() == 0:  # nothing to sum: zeros
        return [grad_out.new_zeros(grad_out.shape)] + [
            t.new_zeros(t.shape) if t is not None else None for t in leaves]
    out = involution_fused_reference(leaves[0], leaves[1], leaves[2], case.kernel,
                                     bias=leaves[3], stride=case.stride, padding=case.padding,
                                     dilation=case.dilation)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(out, present, grad_out))
    return [out.detach()] + [next(grads) if t is not None else None for t in leaves]


def _close(got, want, case: Case, what: str) -> None:
    if want is None:
        assert got is None, f'{what}: a gradient where none is wanted'
        return
    assert got.shape == want.shape, f'{what}: shape {tuple(got.shape)} != {tuple(want.shape)}'
    assert got.dtype == case.dtype, f'{what}: dtype {got.dtype} != {case.dtype}'
    if want.numel():
        error = (got.double() - want).abs().max().item()
        bound = TOLERANCE[case.dtype] * max(1.0, want.abs().max().item())
        assert error <= bound, f'{what}: max error {error:.3g} > {bound:.3g}'


def _to_2d(x, h, g, case: Case):
    """The ops' canonical 2-D layout and geometry lists."""
    geometry = [list(case.kernel), list(case.stride), list(case.padding), list(case.dilation)]
    if case.ndim == 1:
        x, h, g = x.unsqueeze(2), h.unsqueeze(2), g.unsqueeze(2)
        geometry = [[1, *geometry[0]], [1, *geometry[1]], [0, *geometry[2]],
                    [1, *geometry[3]]]
    return x, h, g, geometry


def _ops(x, h, w, b, g, geometry):
    ops = torch.ops.mmrednet
    return {
        'torch.ops.mmrednet.involution_fused': lambda: ops.involution_fused(x, h, w, b,
                                                                            *geometry),
        'torch.ops.mmrednet.involution_fused_grad_input':
        lambda: ops.involution_fused_grad_input(g, x, h, w, b, *geometry),
        'torch.ops.mmrednet.involution_fused_grad_span':
        lambda: ops.involution_fused_grad_span(g, x, h, w, *geometry),
    }


def _fake(call):
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        return call(lambda t: mode.from_tensor(t) if isinstance(t, torch.Tensor) else t)


def _mismatched(case: Case, x, h, w, b, g, geometry):
    """The ops' arguments (2-D layout) with the case's mismatch planted."""
    kernel, stride, padding, dilation = (list(v) for v in geometry)
    kind = case.mismatch
    if kind == 'hidden_batch':
        h = torch.cat([h, h.new_ones(1, *h.shape[1:])])
    elif kind == 'hidden_channels':
        h = h.new_ones(h.shape[0], h.shape[1] + 1, *h.shape[2:])
    elif kind == 'hidden_spatial':
        h = h.new_ones(*h.shape[:3], h.shape[3] + 1)
    elif kind == 'hidden_rank':
        h = h.flatten(2)
    elif kind == 'weight_rows':
        w = w.new_ones(w.shape[0] + 1, w.shape[1])
    elif kind == 'weight_rank':
        w = w[:, :, None, None]
    elif kind == 'groups_not_dividing':
        c = x.shape[1]
        taps = kernel[0] * kernel[1]
        w = w.new_ones((c + 1 if c else 3) * taps, w.shape[1])
        b = None
        if c == 0:  # 3 groups do divide 0 channels: give the input channels instead
            x = x.new_ones(x.shape[0], 2, *x.shape[2:])
            g = g.new_ones(x.shape[0], 2, *g.shape[2:])
    elif kind == 'bias_shape':
        b = b.new_ones(b.shape[0] + 1)
    elif kind == 'hidden_dtype':
        h = h.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    elif kind == 'bias_dtype':
        b = b.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    elif kind == 'integer_dtype':
        x, h, w, g = x.long(), h.long(), w.long(), g.long()
        b = None if b is None else b.long()
    elif kind == 'weight_device':
        w = w.to('meta')
    elif kind == 'zero_kernel':
        kernel[1] = 0
    elif kind == 'stride_length':
        stride = stride + [1]
    elif kind == 'zero_stride':
        stride[1] = 0
    elif kind == 'negative_padding':
        padding[1] = -1
    elif kind == 'zero_dilation':
        dilation[1] = 0
    elif kind == 'input_rank':
        x = x.flatten(2)
    elif kind == 'empty_spatial':
        x = x[..., :0]
    elif kind == 'grad_output_shape':
        g = g.new_ones(*g.shape[:3], g.shape[3] + 1)
    elif kind == 'grad_output_dtype':
        g = g.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    return x, h, w, b, g, [kernel, stride, padding, dilation]


def _expect_error(fn, what: str, words: str) -> None:
    try:
        fn()
    except (ValueError, TypeError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else ''
        assert words in str(exc), f'{what}: error does not name {words!r}: {message}'
        return
    raise AssertionError(f'{what}: no error (expected one naming {words!r})')


def check_case(case: Case) -> None:
    """Every entry point on one case; raises AssertionError saying what went wrong."""
    from mmrednet.ops import involution_fused
    x, h, w, b, g = _problem(case)
    want = _reference(x, h, w, b, g, case)
    x, h, g = (_in_layout(t.to(case.dtype), case.layout) for t in (x, h, g))
    w, b = w.to(case.dtype), None if b is None else b.to(case.dtype)
    x2, h2, g2, geometry2 = _to_2d(x, h, g, case)
    if case.mismatch is None:
        leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, h, w, b)]
        weight = leaves[2].view(*leaves[2].shape, *(1, ) * case.ndim) if case.conv_weight \
            else leaves[2]
        out = involution_fused(leaves[0], leaves[1], weight, case.kernel, bias=leaves[3],
                               stride=case.stride, padding=case.padding, dilation=case.dilation)
        _close(out, want[0], case, 'involution_fused')
        present = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(out, present, g) if out.numel() else
                     [torch.zeros_like(t) for t in present])
        for name, leaf, ref in zip(('input', 'hidden', 'weight', 'bias'), leaves, want[1:],
                                   strict=True):
            _close(next(grads) if leaf is not None else None, ref, case, f'grad {name}')
        refs = {'torch.ops.mmrednet.involution_fused': [want[0]],
                'torch.ops.mmrednet.involution_fused_grad_input': [want[1]],
                'torch.ops.mmrednet.involution_fused_grad_span': want[2:4] + [
                    want[4] if b is not None else None]}
        for what, call in _ops(x2, h2, w, b, g2, geometry2).items():
            got = call()
            got = list(got) if isinstance(got, (tuple, list)) else [got]
            for k, (value, ref) in enumerate(zip(got, refs[what], strict=True)):
                if ref is None:
                    continue  # grad_span's bias gradient of a problem without bias
                _close(value.view(ref.shape), ref, case, f'{what}[{k}]')
            fake = _fake(lambda convert, what=what: _ops(
                *(convert(t) for t in (x2, h2, w, b, g2)), geometry2)[what]())
            fake = list(fake) if isinstance(fake, (tuple, list)) else [fake]
            for k, (f, r) in enumerate(zip(fake, got, strict=True)):
                assert f.shape == r.shape and f.dtype == r.dtype, f'fake {what}[{k}]'
                assert f.stride() == r.stride(), (f'fake {what}[{k}]: strides {f.stride()} != '
                                                  f'{r.stride()}')
        return
    scope, words = MISMATCHES[case.mismatch]
    bx, bh, bw, bb, bg, bgeo = _mismatched(case, x2, h2, w, b, g2, geometry2)
    for what, call in _ops(bx, bh, bw, bb, bg, bgeo).items():
        if scope == 'grad' and what.endswith('involution_fused'):
            continue
        if scope == 'bias' and what.endswith('grad_span'):
            continue  # takes no bias
        _expect_error(call, what, words)
        if 'device' not in case.mismatch:
            _expect_error(lambda what=what: _fake(lambda convert: _ops(
                *(convert(t) for t in (bx, bh, bw, bb, bg)), bgeo)[what]()), f'fake {what}',
                words)
    if scope in ('all', 'bias') and case.mismatch != 'hidden_rank':
        # The functional entry, in the caller's 1-D or 2-D layout.
        squeeze = (lambda t: t.squeeze(2)) if case.ndim == 1 else (lambda t: t)
        if case.ndim == 1 and case.mismatch == 'empty_spatial':
            squeeze = lambda t: t.flatten(2)  # noqa: E731
        fgeo = [v[-case.ndim:] for v in bgeo]
        _expect_error(lambda: involution_fused(squeeze(bx), squeeze(bh), bw, fgeo[0], bias=bb,
                                               stride=fgeo[1], padding=fgeo[2],
                                               dilation=fgeo[3]), 'involution_fused', words)


def main(seed: int, count: int) -> None:
    """Run the cases, printing each before it runs (the last line names a crashing case) and a
    JSON summary at the end."""
    torch.manual_seed(seed)
    failures, counts = [], {'valid': 0, 'mismatch': 0}
    for case in make_cases(seed, count):
        print('RUN', case.describe(), flush=True)
        try:
            check_case(case)
        except Exception as exc:  # an unexpected error in a valid case fails it too
            failures.append(f'{case.describe()}: {type(exc).__name__}: {exc}'.splitlines()[0])
        counts['valid' if case.mismatch is None else 'mismatch'] += 1
    print('SUMMARY', json.dumps(dict(counts=counts, failures=failures)), flush=True)


def _run(count: int, library: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')]))
    if not library:
        env['MMREDNET_WITH_EXT'] = '0'
    code = f'from tests.test_fused_op_fuzz import main; main(25, {count})'
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)  # a crash is reported below
    lines = proc.stdout.splitlines()
    last = next((line for line in reversed(lines) if line.startswith('RUN')), 'before any case')
    assert proc.returncode == 0, (f'the fuzz run died (status {proc.returncode}) in {last}\n'
                                  f'{proc.stderr[-3000:]}')
    summary = json.loads(lines[-1].removeprefix('SUMMARY '))
    assert not summary['failures'], '\n'.join(summary['failures'][:20])
    return summary['counts']


def test_every_cpu_entry_point_gives_the_composition_or_a_clear_error():
    counts = _run(count=250, library=True)
    assert counts['valid'] > 110 and counts['mismatch'] > 70


def test_portable_path_gives_the_composition_or_a_clear_error():
    counts = _run(count=100, library=False)
    assert counts['valid'] > 40 and counts['mismatch'] > 25


def test_fuzz_cases_cover_every_mismatch_dtype_and_layout():
    cases = make_cases(25, 250)
    assert {c.mismatch for c in cases} == {None, *MISMATCHES}
    valid = [c for c in cases if c.mismatch is None]
    assert {c.dtype for c in valid} == set(DTYPES)
    assert {(c.ndim, c.layout) for c in valid} == {(1, 'contiguous'), (1, 'strided'),
                                                   (2, 'contiguous'), (2, 'strided'),
                                                   (2, 'channels_last')}
    assert any(c.batch == 0 for c in valid) and any(c.group_channels == 0 for c in valid)
    assert any(c.bias for c in valid) and any(not c.bias for c in valid)
    assert any(c.conv_weight for c in valid)
    assert any(c.layout != 'channels_last' and c.out_size[-1] >= 32 for c in valid)
