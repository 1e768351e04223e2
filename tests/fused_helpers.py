"""Builders for the fused op's tests: a problem and its result by the composition."""
import math
from typing import Callable, Tuple

import torch

from mmrednet.ops._args import output_size


def fused_problem(n=2, c=32, groups=2, size=(9, 7), kernel=3, stride=1, dilation=1,
                  padding=None, hidden=8, bias=True, dtype=torch.float64,
                  requires_grad=True) -> Tuple[torch.Tensor, ...]:
    """``(input, hidden, weight, bias, kwargs)`` of a fused problem (``bias`` None if not
    ``bias``); ``kwargs`` are the geometry for :func:`involution_fused`."""
    padding = (kernel - 1) // 2 * dilation if padding is None else padding
    out = [output_size(s, kernel, stride, padding, dilation) for s in size]
    rows = groups * kernel**len(size)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, dtype=dtype) * scale).requires_grad_(requires_grad)

    x, h = rand(n, c, *size), rand(n, hidden, *out)
    w = rand(rows, hidden, scale=1 / math.sqrt(hidden))
    b = rand(rows) if bias else None
    return x, h, w, b, dict(kernel_size=kernel, stride=stride, padding=padding,
                            dilation=dilation)


def outputs_and_grads(op: Callable, x, h, w, b, grad_out, kwargs):
    """Output and gradients (of x, h, w and b, None for a missing bias) of
    ``op(x, h, w, bias=b, **kwargs)``, on fresh leaves: ``op`` is
    ``involution_fused`` or its definition, ``involution_fused_reference``."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None
              for t in (x, h, w, b)]
    out = op(leaves[0], leaves[1], leaves[2], bias=leaves[3], **kwargs)
    present = [t for t in leaves if t is not None]
    grads = iter(torch.autograd.grad(out, present, grad_out))
    return out.detach(), [next(grads) if t is not None else None for t in leaves]


def channels_last(*tensors):
    """4-D tensors channels-last (others as they are)."""
    return [t.contiguous(memory_format=torch.channels_last) if t is not None and t.dim() == 4
            else t for t in tensors]
