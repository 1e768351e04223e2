"""The fused op's CUDA kernels, or its composition where they cannot serve a call.

The composition (the span as a cuDNN 1x1 convolution, then the involution op's
CUDA kernels; ``portable.fused_*``) is the fused op's definition and the
fallback: without CuPy, for a dtype the kernels lack, for planes with a side
of 2**30 or more, for an empty problem, when compiling fails, when an entry
point fails its first-use self-check (:mod:`~mmrednet.ops.cuda.fused_selfcheck`)
and, in a CUDA graph capture, for an entry point that has not run before. The
choice is per op: ``grad_span`` takes the kernels only if both of its entry
points (``grad_hidden`` and ``grad_span_weight``) may run.

``MMREDNET_CUDA_FUSED=0`` turns the fused kernels off (the composition, without
a warning): for a GPU on which ``tools/check_cuda.py``'s ``fused-timing`` step
finds them slower than the composition.

The kernels compute contiguous NCHW: other layouts (channels-last) are made
contiguous first (one copy of the input and of hidden), and results are
contiguous, as the op's fake kernel says for CUDA.
"""
import os
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .. import portable
from . import backend, fused_planning, fused_selfcheck, launcher, selfcheck
from .planning import MAX_SIDE, TAGS


def _reason(dtype: torch.dtype, device: torch.device) -> Optional[str]:
    """Why the fused kernels cannot run for ``dtype`` on ``device``, or None."""
    reason = launcher.unavailable_reason()
    if reason is None and not launcher.FUSED_SOURCE.is_file():
        reason = (f'the kernel source {launcher.FUSED_SOURCE} is missing: the installation is '
                  'incomplete; reinstall mmrednet')
    return reason or backend._failures.get(('fused', TAGS[dtype], device.index))


def enabled() -> bool:
    """Whether the fused kernels may run (``MMREDNET_CUDA_FUSED=0``: no)."""
    return os.environ.get('MMREDNET_CUDA_FUSED', '1') != '0'


def _use_kernels(input: Tensor, hidden: Tensor, padding: Sequence[int]) -> bool:
    if not enabled() or input.dtype not in TAGS or not launcher.runs_on(input.device):
        return False
    if input.numel() == 0 or hidden.shape[2:].numel() == 0:
        return False  # nothing to compute, or nothing to launch over: the composition
    if any(size + 2 * pad >= MAX_SIDE
           for size, pad in zip(input.shape[2:], padding, strict=True)):
        return False
    reason = _reason(input.dtype, input.device)
    if reason is not None:
        backend._warn_once(reason)
        return False
    return True


def _ready(ops: Sequence[str], shapes: fused_planning.FusedShapes, dtype: torch.dtype,
           device: torch.device, sm_count: int) -> bool:
    """Whether every entry point of ``ops`` is compiled, loaded and has passed its check
    on ``device`` (compiling and checking them first, outside a graph capture)."""
    for op in ops:
        kernel = fused_planning.plan(op, shapes, dtype, sm_count).kernel
        if backend._capturing():
            if not (launcher.loaded(kernel, device)
                    and selfcheck.decided(kernel, device)):
                return False
            continue
        try:
            launcher.load(kernel, dtype, device, launcher.FUSED_SOURCE)
        except Exception as exc:  # NVRTC missing or failing: the composition, say why once
            reason = f'compiling the fused kernels failed ({type(exc).__name__}: {exc})'
            backend._failures[('fused', TAGS[dtype], device.index)] = reason
            backend._warn_once(reason)
            return False
        if not fused_selfcheck.verified(op, kernel, dtype, device, sm_count):
            return False
    return True


def _launch(op: str, tensors: dict, shapes: fused_planning.FusedShapes, sm_count: int
            ) -> Tensor:
    hidden = tensors['hidden']
    out = torch.empty(fused_planning.result_shape(op, shapes, sm_count),
                      dtype=fused_planning.result_dtype(op, hidden.dtype), device=hidden.device)
    launcher.launch(fused_planning.plan(op, shapes, hidden.dtype, sm_count),
                    fused_selfcheck.launch_tensors(op, tensors, out),
                    source=launcher.FUSED_SOURCE)
    return out


def _prepare(input, hidden, weight, bias, kernel_size, stride, padding, dilation, ops):
    """The contiguous tensors and shapes of a call and the SM count if the kernels take
    it (every entry point of ``ops`` ready), else None."""
    if not _use_kernels(input, hidden, padding):
        return None
    sm_count = launcher.sm_count(input.device)
    shapes = fused_planning.shapes_of(input, hidden, weight, bias, kernel_size, stride,
                                      padding, dilation)
    if not _ready(ops, shapes, input.dtype, input.device, sm_count):
        return None
    tensors = dict(input=input.contiguous(), hidden=hidden.contiguous(),
                   span=weight.contiguous(), bias=None if bias is None else bias.contiguous())
    return tensors, shapes, sm_count


def forward(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
            kernel_size: List[int], stride: List[int], padding: List[int],
            dilation: List[int]) -> Tensor:
    """``mmrednet::involution_fused`` on CUDA tensors (checked, 2-D layout)."""
    geometry = (kernel_size, stride, padding, dilation)
    prepared = _prepare(input, hidden, weight, bias, *geometry, ('forward', ))
    if prepared is None:
        return portable.fused_forward(input, hidden, weight, bias, *geometry)
    tensors, shapes, sm_count = prepared
    return _launch('forward', {**tensors, 'grad_output': None}, shapes, sm_count)


def grad_input(grad_output: Tensor, input: Tensor, hidden: Tensor, weight: Tensor,
               bias: Optional[Tensor], kernel_size: List[int], stride: List[int],
               padding: List[int], dilation: List[int]) -> Tensor:
    """``mmrednet::involution_fused_grad_input`` on CUDA tensors."""
    geometry = (kernel_size, stride, padding, dilation)
    prepared = _prepare(input, hidden, weight, bias, *geometry, ('grad_input', ))
    if prepared is None:
        return portable.fused_grad_input(grad_output, input, hidden, weight, bias, *geometry)
    tensors, shapes, sm_count = prepared
    return _launch('grad_input', {**tensors, 'grad_output': grad_output.contiguous()}, shapes,
                   sm_count)


def grad_span(grad_output: Tensor, input: Tensor, hidden: Tensor, weight: Tensor,
              kernel_size: List[int], stride: List[int], padding: List[int],
              dilation: List[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """``mmrednet::involution_fused_grad_span`` on CUDA tensors:
    ``(grad_hidden, grad_weight, grad_bias)``."""
    geometry = (kernel_size, stride, padding, dilation)
    prepared = _prepare(input, hidden, weight, None, *geometry,
                        ('grad_hidden', 'grad_span_weight'))
    if prepared is None:
        return portable.fused_grad_span(grad_output, input, hidden, weight, *geometry)
    tensors, shapes, sm_count = prepared
    tensors['grad_output'] = grad_output.contiguous()
    grad_hidden = _launch('grad_hidden', tensors, shapes, sm_count)
    partial = _launch('grad_span_weight', tensors, shapes, sm_count)
    return (grad_hidden, *fused_planning.reduce_span_partials(partial, input.dtype))
