"""The public functional involution ops: involution, its backward, and the fused op."""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._args import IntOrPair, canonicalize, dense
from ._fused_args import canonicalize_fused, dense_fused
from .library import fused_op, involution_fused_grads, involution_grads, involution_op


def _op_args(input: Tensor, weight: Tensor, stride: IntOrPair, padding: IntOrPair,
             dilation: IntOrPair) -> Tuple[Tensor, Tensor, List[List[int]], bool]:
    """The custom op's tensors and geometry, and whether the problem is 1-D.

    Differentiable (casts and views), so autograd maps gradients of the op's
    tensors back to ``input`` and ``weight``.
    """
    device = input.device.type
    if input.dtype != weight.dtype and torch.is_autocast_enabled(device):
        # As a convolution under autocast: compute in the autocast dtype (the
        # generated kernel comes from a conv, the input often from an fp32 op).
        dtype = torch.get_autocast_dtype(device)
        input, weight = input.to(dtype), weight.to(dtype)
    x, w, geo, one_d = canonicalize(input, weight, stride, padding, dilation)
    geometry = [list(geo.stride), list(geo.padding), list(geo.dilation)]
    return *dense(x, w), geometry, one_d


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
    x, w, geometry, one_d = _op_args(input, weight, stride, padding, dilation)
    out = involution_op(x, w, *geometry)
    return out.squeeze(2) if one_d else out


def involution_backward(grad_output: Tensor, input: Tensor, weight: Tensor,
                        stride: IntOrPair = 1, padding: IntOrPair = 0, dilation: IntOrPair = 1,
                        output_mask: Sequence[bool] = (True, True)
                        ) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """Gradients of :func:`involution` w.r.t. ``input`` and ``weight``, without its forward.

    For callers that do not keep ``weight`` for backward but recompute it
    there, like ``torch.nn.grad.conv2d_input`` / ``conv2d_weight`` for
    convolutions. Call it under the forward's autocast state: it casts as
    :func:`involution` did.

    Args:
        grad_output (Tensor): gradient of the output, ``(N, C, Ho, Wo)`` or
            ``(N, C, Lo)``.
        input, weight, stride, padding, dilation: as for :func:`involution`.
        output_mask (Sequence[bool]): which of the two gradients to compute.

    Returns:
        tuple: ``(grad_input, grad_weight)`` with the shapes and dtypes of
        ``input`` and ``weight``; None where ``output_mask`` is False.
    """
    with torch.enable_grad():
        # Fresh leaves: only the casts and views of ``_op_args`` are
        # differentiated here, never whatever produced input and weight.
        leaves = (input.detach().requires_grad_(), weight.detach().requires_grad_())
        x, w, geometry, one_d = _op_args(*leaves, stride, padding, dilation)
    grad = grad_output.unsqueeze(2) if one_d else grad_output
    if grad.shape != (*x.shape[:2], *w.shape[-2:]):
        expected = (*x.shape[:2], *w.shape[-1 if one_d else -2:])
        raise ValueError(f'involution_backward: grad_output must have the output shape '
                         f'{expected}, got {tuple(grad_output.shape)}')
    grads = involution_grads(grad.to(x.dtype), x.detach(), w.detach(), *geometry,
                             output_mask)
    # Back through the casts and views to the caller's input and weight.
    wanted = [(t, leaf, g) for t, leaf, g in zip((x, w), leaves, grads, strict=True)
              if g is not None]
    results = iter(torch.autograd.grad(*zip(*wanted, strict=True)) if wanted else ())
    return tuple(None if g is None else next(results) for g in grads)


def involution_fused(input: Tensor, hidden: Tensor, weight: Tensor, kernel_size: IntOrPair,
                     bias: Optional[Tensor] = None, stride: IntOrPair = 1,
                     padding: IntOrPair = 0, dilation: IntOrPair = 1) -> Tensor:
    """Involution with kernels generated from ``hidden`` by a 1x1 convolution,
    without writing them: ``involution(input, span(hidden))``.

    ``span(hidden)[n, g*Kh*Kw + u*Kw + v, i, j] = sum_k weight[g*Kh*Kw + u*Kw + v, k]
    * hidden[n, k, i, j] + bias[...]``, viewed as the kernel ``(N, G, Kh, Kw,
    Ho, Wo)`` of :func:`involution`. The result equals that composition (the
    kernel branch of RedNet's involution layer, then the op), but the CPU
    kernels generate each pixel's kernel in cache and never store it, in
    forward or backward (the kernel is ``Kh*Kw*G/C`` times the input's size);
    other devices run the composition. Gradients flow to ``input``,
    ``hidden``, ``weight`` and ``bias``.

    Args:
        input (Tensor): ``(N, C, H, W)``, or ``(N, C, L)`` for 1-D.
        hidden (Tensor): the kernel branch's features after its norm and
            activation, ``(N, C_hidden, Ho, Wo)`` (``(N, C_hidden, Lo)``): the
            output size of a convolution of ``input`` with this geometry.
        weight (Tensor): the span's weight, ``(G*Kh*Kw, C_hidden)`` or as
            ``nn.Conv2d`` (``nn.Conv1d``) stores it, ``(G*Kh*Kw, C_hidden, 1, 1)``;
            ``G`` must divide ``C``.
        kernel_size (int | tuple): ``(Kh, Kw)`` (``K`` for 1-D).
        bias (Tensor, optional): the span's bias, ``(G*Kh*Kw,)``. Default: None.
        stride (int | tuple): step between output pixels. Default: 1.
        padding (int | tuple): zero padding on each side. Default: 0.
        dilation (int | tuple): spacing between kernel taps. Default: 1.

    Returns:
        Tensor: ``(N, C, Ho, Wo)`` (or ``(N, C, Lo)``), same dtype as input;
        channels-last on the CPU when ``input`` is.
    """
    x, h, w, b, geometry, one_d = _fused_op_args(input, hidden, weight, bias, kernel_size,
                                                 stride, padding, dilation)
    out = fused_op(x, h, w, b, *geometry)
    return out.squeeze(2) if one_d else out


def _fused_op_args(input: Tensor, hidden: Tensor, weight: Tensor, bias: Optional[Tensor],
                   kernel_size: IntOrPair, stride: IntOrPair, padding: IntOrPair,
                   dilation: IntOrPair
                   ) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor], List[List[int]], bool]:
    """The fused op's tensors and geometry, and whether the problem is 1-D.

    Differentiable (casts and views), as :func:`_op_args`.
    """
    device = input.device.type
    tensors = (input, hidden, weight, bias)
    if (len({t.dtype for t in tensors if isinstance(t, Tensor)}) > 1
            and torch.is_autocast_enabled(device)):
        # As a convolution under autocast: compute in the autocast dtype.
        dtype = torch.get_autocast_dtype(device)
        input, hidden, weight, bias = (t.to(dtype) if isinstance(t, Tensor) else t
                                       for t in tensors)
    x, h, w, b, geo, one_d = canonicalize_fused(input, hidden, weight, bias, kernel_size, stride,
                                                padding, dilation)
    return *dense_fused(x, h, w, b), geo.lists(), one_d


def involution_fused_backward(grad_output: Tensor, input: Tensor, hidden: Tensor,
                              weight: Tensor, kernel_size: IntOrPair,
                              bias: Optional[Tensor] = None, stride: IntOrPair = 1,
                              padding: IntOrPair = 0, dilation: IntOrPair = 1,
                              output_mask: Sequence[bool] = (True, True, True, True)
                              ) -> Tuple[Optional[Tensor], ...]:
    """Gradients of :func:`involution_fused` w.r.t. ``input``, ``hidden``,
    ``weight`` and ``bias``, without its forward.

    For callers that do not keep ``hidden`` for backward but recompute it
    there (as :class:`mmrednet.models.Involution` does), as
    :func:`involution_backward` is for :func:`involution`. Call it under the
    forward's autocast state: it casts as :func:`involution_fused` did.

    Args:
        grad_output (Tensor): gradient of the output, ``(N, C, Ho, Wo)`` or
            ``(N, C, Lo)``.
        input, hidden, weight, kernel_size, bias, stride, padding, dilation:
            as for :func:`involution_fused`.
        output_mask (Sequence[bool]): which of the four gradients to compute.

    Returns:
        tuple: ``(grad_input, grad_hidden, grad_weight, grad_bias)`` with the
        shapes and dtypes of the arguments; None where ``output_mask`` is
        False (``grad_bias`` also where ``bias`` is None).
    """
    with torch.enable_grad():
        # Fresh leaves: only the casts and views of ``_fused_op_args`` are
        # differentiated here, never whatever produced the arguments.
        leaves = tuple(None if t is None else t.detach().requires_grad_()
                       for t in (input, hidden, weight, bias))
        x, h, w, b, geometry, one_d = _fused_op_args(*leaves, kernel_size, stride, padding,
                                                     dilation)
    grad = grad_output.unsqueeze(2) if one_d else grad_output
    if grad.shape != (*x.shape[:2], *h.shape[2:]):
        expected = (*x.shape[:2], *h.shape[3 if one_d else 2:])
        raise ValueError(f'involution_fused_backward: grad_output must have the output shape '
                         f'{expected}, got {tuple(grad_output.shape)}')
    grads = involution_fused_grads(grad.to(x.dtype), x.detach(), h.detach(), w.detach(),
                                   None if b is None else b.detach(), *geometry, output_mask)
    # Back through the casts and views to the caller's tensors.
    wanted = [(t, leaf, g) for t, leaf, g in zip((x, h, w, b), leaves, grads, strict=True)
              if g is not None]
    results = iter(torch.autograd.grad(*zip(*wanted, strict=True)) if wanted else ())
    return tuple(None if g is None else next(results) for g in grads)
