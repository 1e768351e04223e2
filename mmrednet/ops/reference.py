"""The reference involution: plain unfold-multiply-sum, defining the semantics.

It builds the ``K*K``-times unfolded input, so it is slow and memory hungry; it
exists so that every other implementation can be tested against it.
"""
import torch.nn.functional as F
from torch import Tensor

from ._args import IntOrPair, canonicalize


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
