"""The public functional involution op."""
import torch
from torch import Tensor

from ._args import IntOrPair, canonicalize
from .library import involution_op


def involution(input: Tensor, weight: Tensor, stride: IntOrPair = 1, padding: IntOrPair = 0,
               dilation: IntOrPair = 1) -> Tensor:
    """Apply per-pixel, channel-shared kernels to ``input`` (Li et al., CVPR 2021).

    ``out[n, c, i, j] = sum_{u, v} weight[n, g, u, v, i, j] *
    input[n, c, i*s + u*d - p, j*s + v*d - p]`` with ``g = c // (C // G)``
    (contiguous channel groups) and zeros read outside the input.

    Args:
        input (Tensor): ``(N, C, H, W)``, or ``(N, C, L)`` for 1-D.
        weight (Tensor): per-pixel kernels ``(N, G, K, K, Ho, Wo)``, or
            ``(N, G, K, Lo)`` for 1-D, ``G`` dividing ``C``; the output size
            is that of a convolution with the same geometry.
        stride (int | tuple): step between output pixels. Default: 1.
        padding (int | tuple): zero padding on each side. Default: 0.
        dilation (int | tuple): spacing between kernel taps. Default: 1.

    Returns:
        Tensor: ``(N, C, Ho, Wo)`` (or ``(N, C, Lo)``), same dtype as input.
    """
    device = input.device.type
    if input.dtype != weight.dtype and torch.is_autocast_enabled(device):
        # As a convolution under autocast: compute in the autocast dtype (the
        # generated kernel comes from a conv, the input often from an fp32 op).
        dtype = torch.get_autocast_dtype(device)
        input, weight = input.to(dtype), weight.to(dtype)
    x, w, geo, one_d = canonicalize(input, weight, stride, padding, dilation)
    out = involution_op(x.contiguous(), w.contiguous(), list(geo.stride), list(geo.padding),
                        list(geo.dilation))
    return out.squeeze(2) if one_d else out
