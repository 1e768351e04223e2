"""First-use self-check of the fused op's CUDA kernels, against the composition.

As :mod:`~mmrednet.ops.cuda.selfcheck` does for the op's kernels (and through its
verdicts, lock and warning): the first time a fused entry point runs on a device
in a process, it first runs on a small deterministic probe and is compared,
within the error bound of :func:`~mmrednet.ops.cuda.bound.fused_terms`, with the
composition the fused op is defined by (the span as a 1x1 convolution, then the
involution op's portable PyTorch path) in float64 on the same device. An entry
point that fails is not used again in the process: its op takes the composition.

The probe of an entry point: 2 x 10 channels in 2 groups (5 a group: chunks with a
remainder), 10 hidden channels (a chunk of 8 and one of 2), stride (2, 1),
dilation (1, 2), half the kernel as padding, a 9 x 5 output, with a bias; the
kernel is K x K for ``forward_kK`` and 3 x 5 for the others (which serve every
geometry).
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import portable
from . import bound, fused_planning, launcher, selfcheck
from .fused_planning import FusedShapes
from .planning import PARAMS, LaunchParams


def probe(kernel: str) -> FusedShapes:
    """The probe of fused entry point ``kernel`` (``involution_fused_{variant}_{dtype}``)."""
    variant = kernel[len('involution_fused_'):].rsplit('_', 1)[0]
    square = variant.startswith('forward_k')
    k = (int(variant[len('forward_k'):]), ) * 2 if square else (3, 5)
    out, stride, dilation = (9, 5), (2, 1), (1, 2)
    padding = tuple(d * (size // 2) for d, size in zip(dilation, k, strict=True))
    size = tuple(max(1, (o - 1) * s + d * (kk - 1) + 1 - 2 * p)
                 for o, s, d, kk, p in zip(out, stride, dilation, k, padding, strict=True))
    return FusedShapes(input_shape=(2, 10, *size), hidden=10, groups=2, out=out, kernel_size=k,
                       stride=stride, padding=padding, dilation=dilation, has_bias=True)


def operands(shapes: FusedShapes, dtype: torch.dtype, device, generator: torch.Generator
             ) -> Dict[str, Tensor]:
    """Random ``input, hidden, span, bias, grad_output`` of ``shapes``, rounded to ``dtype``."""
    n, c, _, _ = shapes.input_shape

    def draw(*shape):
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(device, dtype)

    return dict(input=draw(*shapes.input_shape), hidden=draw(n, shapes.hidden, *shapes.out),
                span=draw(shapes.span_rows, shapes.hidden),
                bias=draw(shapes.span_rows) if shapes.has_bias else None,
                grad_output=draw(n, c, *shapes.out))


def composed(op: str, t: Dict[str, Optional[Tensor]], shapes: FusedShapes) -> Tensor:
    """What entry point ``op`` computes, by the composition, in the tensors' dtype
    (``grad_span_weight``: the span weight's gradient with the bias' as a last column)."""
    geometry = (shapes.stride, shapes.padding, shapes.dilation)
    kernel = portable._span(t['hidden'], t['span'], t['bias'], shapes.kernel_size)
    if op == 'forward':
        return portable.forward(t['input'], kernel, *geometry)
    if op == 'grad_input':
        return portable.grad_input(t['grad_output'], t['input'], kernel, *geometry)
    grad_kernel = portable.grad_weight(t['grad_output'], t['input'], kernel,
                                       *geometry).flatten(1, 3)
    if op == 'grad_hidden':
        return F.conv2d(grad_kernel, t['span'].t()[:, :, None, None])
    grad_weight = torch.einsum('nmhw,nkhw->mk', grad_kernel, t['hidden'])
    return torch.cat([grad_weight, grad_kernel.sum((0, 2, 3))[:, None]], 1)


def tolerance(op: str, t: Dict[str, Optional[Tensor]], shapes: FusedShapes, dtype: torch.dtype,
              sm_count: int) -> Tensor:
    """The elementwise error bound of ``op`` on float64 operands ``t``."""
    magnitude = composed(op, {k: None if v is None else v.abs() for k, v in t.items()}, shapes)
    n, c, _, _ = shapes.input_shape
    taps = shapes.kernel_size[0] * shapes.kernel_size[1]
    terms = bound.fused_terms(op, c // shapes.groups, shapes.hidden, taps, shapes.groups,
                              n * shapes.out[0] * shapes.out[1],
                              fused_planning.slices(shapes, sm_count))
    return bound.bound(dtype, terms, magnitude)


def result(op: str, raw: Tensor, dtype: torch.dtype) -> Tensor:
    """An entry point's result as :func:`composed` gives it (the partial sums reduced)."""
    if op != 'grad_span_weight':
        return raw
    grad_weight, grad_bias = fused_planning.reduce_span_partials(raw, dtype)
    return torch.cat([grad_weight, grad_bias[:, None]], 1)


def launch_tensors(op: str, t: Dict[str, Optional[Tensor]], out: Tensor) -> tuple:
    """``(input, hidden, span, bias, grad_output, out)`` for the launcher: None where
    ``op`` reads nothing."""
    names = ('input', 'hidden', 'span', 'bias', 'grad_output')
    return (*(t[k] if reads else None
              for k, reads in zip(names, fused_planning.READS[op], strict=True)), out)


def check(op: str, kernel: str, dtype: torch.dtype, device: torch.device, sm_count: int,
          params: LaunchParams = PARAMS) -> Optional[str]:
    """Run fused entry point ``kernel`` (of ``op``) on the probe on ``device``.

    Returns:
        None if every element is within the bound; otherwise what differed.
    """
    shapes = probe(kernel)
    launch = fused_planning.plan(op, shapes, dtype, sm_count, params)
    if launch.kernel != kernel:
        raise AssertionError(f'the probe of {kernel} plans to {launch.kernel}')
    t = operands(shapes, dtype, device, torch.Generator().manual_seed(selfcheck.SEED))
    raw = torch.full(fused_planning.result_shape(op, shapes, sm_count), float('nan'),
                     dtype=fused_planning.result_dtype(op, dtype), device=device)
    try:
        launcher.launch(launch, launch_tensors(op, t, raw), source=launcher.FUSED_SOURCE,
                        params=params)
    except Exception as exc:  # a launch the device refuses is a failure, not a crash
        return f'the launch failed ({type(exc).__name__}: {exc})'
    got = result(op, raw, dtype)
    exact = {k: None if v is None else v.double() for k, v in t.items()}
    want = composed(op, exact, shapes)
    limit = tolerance(op, exact, shapes, dtype, sm_count)
    error, unwritten = bound.errors(got, want, limit)
    worst = int(error.view(-1).argmax())
    ratio, missing = error.view(-1)[worst].item(), int(unwritten.sum())
    if ratio <= 1.0 and not missing:
        return None
    difference = (got.double() - want).abs().view(-1)[worst].item()
    return (f'max error {difference:.3g} where the bound is {limit.view(-1)[worst].item():.3g} '
            f'({ratio:.3g} times the bound), {missing} of {got.numel()} elements not written, '
            f'on the fused probe {shapes}')


def verified(op: str, kernel: str, dtype: torch.dtype, device: torch.device,
             sm_count: int) -> bool:
    """Whether fused entry point ``kernel`` may run on ``device`` (checked on its first call)."""
    return selfcheck.verified_by(kernel, device,
                                 lambda: check(op, kernel, dtype, device, sm_count))
