"""Involution in plain PyTorch tensor ops, for any device and no compiler.

Walks the K*K taps over strided views of the zero-padded input, so it never
builds the unfolded tensor (peak extra memory is one padded copy of the input
plus one output-sized temporary). It is the fallback behind the native
backends, not the definition of the semantics (that is ``reference.py``).
The fused op's fallback is its composition: the span convolution writes the
kernel, and the involution ops run on it. All tensors are in the canonical
2-D layout of ``_args.canonicalize`` (``_fused_args.canonicalize_fused``).
"""
from typing import Iterator, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


def _taps(weight: Tensor, stride: Sequence[int],
          dilation: Sequence[int]) -> Iterator[Tuple[int, int, slice, slice]]:
    """Yield ``(u, v, rows, cols)``: the padded-input slices that tap (u, v) reads."""
    _, _, kh, kw, ho, wo = weight.shape
    for u in range(kh):
        rows = slice(u * dilation[0], u * dilation[0] + (ho - 1) * stride[0] + 1, stride[0])
        for v in range(kw):
            cols = slice(v * dilation[1], v * dilation[1] + (wo - 1) * stride[1] + 1, stride[1])
            yield u, v, rows, cols


def _grouped(t: Tensor, groups: int) -> Tensor:
    n, c, h, w = t.shape
    return t.view(n, groups, c // groups, h, w)


def forward(input: Tensor, weight: Tensor, stride: Sequence[int], padding: Sequence[int],
            dilation: Sequence[int]) -> Tensor:
    n, c, _, _ = input.shape
    groups, ho, wo = weight.shape[1], weight.shape[4], weight.shape[5]
    padded = _grouped(F.pad(input, (padding[1], padding[1], padding[0], padding[0])), groups)
    out = input.new_zeros(n, groups, c // groups, ho, wo)
    for u, v, rows, cols in _taps(weight, stride, dilation):
        out.addcmul_(padded[..., rows, cols], weight[:, :, u, v].unsqueeze(2))
    return out.view(n, c, ho, wo)


def grad_input(grad_output: Tensor, input: Tensor, weight: Tensor, stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    n, c, h, w = input.shape
    groups = weight.shape[1]
    padded = grad_output.new_zeros(n, groups, c // groups, h + 2 * padding[0],
                                   w + 2 * padding[1])
    grad_out = _grouped(grad_output, groups)
    for u, v, rows, cols in _taps(weight, stride, dilation):
        padded[..., rows, cols].addcmul_(grad_out, weight[:, :, u, v].unsqueeze(2))
    # Contiguous, as the fake kernel says (a view into the padded buffer is not).
    inside = padded[..., padding[0]:padding[0] + h, padding[1]:padding[1] + w]
    return inside.reshape(n, c, h, w).contiguous()


def grad_weight(grad_output: Tensor, input: Tensor, weight: Tensor, stride: Sequence[int],
                padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    groups = weight.shape[1]
    padded = _grouped(F.pad(input, (padding[1], padding[1], padding[0], padding[0])), groups)
    grad_out = _grouped(grad_output, groups)
    grad_w = weight.new_empty(weight.shape)
    for u, v, rows, cols in _taps(weight, stride, dilation):
        grad_w[:, :, u, v] = (padded[..., rows, cols] * grad_out).sum(2)
    return grad_w


# The fused op ``involution(input, span(hidden))`` as its composition: the span
# (a 1x1 convolution) writes the kernel, then the involution ops run on it.
# The default for every device without a fused kernel. Through the registered
# ops (resolved at call time: the library defines them after importing this
# module), so each device runs its own involution kernels.
def _span(hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
          kernel_size: Sequence[int]) -> Tensor:
    """The generated kernel ``(N, G, Kh, Kw, Ho, Wo)`` (pixel-major for a
    channels-last ``hidden``, as the involution ops take it)."""
    groups = weight.shape[0] // (kernel_size[0] * kernel_size[1])
    kernel = F.conv2d(hidden, weight[:, :, None, None], bias)
    return kernel.unflatten(1, (groups, *kernel_size))


def fused_forward(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                  kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                  dilation: Sequence[int]) -> Tensor:
    kernel = _span(hidden, weight, bias, kernel_size)
    return torch.ops.mmrednet.involution(input, kernel, stride, padding, dilation).contiguous()


def fused_grad_input(grad_output: Tensor, input: Tensor, hidden: Tensor, weight: Tensor,
                     bias: Optional[Tensor], kernel_size: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int]) -> Tensor:
    kernel = _span(hidden, weight, bias, kernel_size)
    return torch.ops.mmrednet.involution_grad_input(grad_output, input, kernel, stride, padding,
                                                    dilation).contiguous()


def fused_grad_span(grad_output: Tensor, input: Tensor, hidden: Tensor, weight: Tensor,
                    kernel_size: Sequence[int], stride: Sequence[int], padding: Sequence[int],
                    dilation: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """``(grad_hidden, grad_weight, grad_bias)``: the span's gradients from the kernel's."""
    # grad_weight of the involution op reads only the kernel's shape and layout.
    kernel = _span(hidden, weight, None, kernel_size)
    grad_kernel = torch.ops.mmrednet.involution_grad_weight(grad_output, input, kernel, stride,
                                                            padding, dilation).flatten(1, 3)
    grad_hidden = F.conv2d(grad_kernel, weight.t()[:, :, None, None])
    grad_weight = torch.einsum('nmhw,nkhw->mk', grad_kernel, hidden)
    return grad_hidden.contiguous(), grad_weight, grad_kernel.sum((0, 2, 3))
