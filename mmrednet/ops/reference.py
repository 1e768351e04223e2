"""The reference involution: plain unfold-multiply-sum, defining the semantics.

It builds the ``K*K``-times unfolded input, so it is slow and memory hungry; it
exists so that every other implementation can be tested against it. The fused
op is defined as its composition: the span convolution, then involution.
"""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from ._args import IntOrPair, canonicalize
from ._fused_args import canonicalize_fused


def involution_reference(input: Tensor, weight: Tensor, stride: IntOrPair = 1,
                         padding: IntOrPair = 0, dilation: IntOrPair = 1) -> Tensor:
    """Involution by unfolding (see :func:`mmrednet.ops.involution`).

    ``out[n, c, i, j] = sum_{u, v} weight[n, g(c), u, v, i, j] *
    input[n, c, i*s + u*d - p, j*s + v*d - p]`` with zero padding and
    contiguous channel groups ``g(c) = c // (C // G)``.
    """
    x, w, geo, one_d = canonicalize(input, weight, stride, padding, dilation)
    n, c, _, _ = x.shape
    _, g, kh, kw, ho, wo = w.shape
    cols = F.unfold(x, (kh, kw), dilation=geo.dilation, padding=geo.padding,
                    stride=geo.stride)  # (N, C*Kh*Kw, Ho*Wo)
    cols = cols.view(n, g, c // g, kh, kw, ho, wo)
    out = (cols * w.unsqueeze(2)).sum(dim=(3, 4)).reshape(n, c, ho, wo)
    return out.squeeze(2) if one_d else out


def involution_fused_reference(input: Tensor, hidden: Tensor, weight: Tensor,
                               kernel_size: IntOrPair, bias: Optional[Tensor] = None,
                               stride: IntOrPair = 1, padding: IntOrPair = 0,
                               dilation: IntOrPair = 1) -> Tensor:
    """The fused op by its definition (see :func:`mmrednet.ops.involution_fused`):
    the kernel ``span(hidden)`` (a 1x1 convolution) written out, then
    :func:`involution_reference`."""
    x, h, w, b, geo, one_d = canonicalize_fused(input, hidden, weight, bias, kernel_size,
                                                stride, padding, dilation)
    groups = w.shape[0] // (geo.kernel_size[0] * geo.kernel_size[1])
    kernel = F.conv2d(h, w[:, :, None, None], b).unflatten(1, (groups, *geo.kernel_size))
    out = involution_reference(x, kernel, geo.stride, geo.padding, geo.dilation)
    return out.squeeze(2) if one_d else out
