"""The fused involution that keeps only its input for backward and regenerates the kernel
branch's hidden features there.

The fused op never writes the generated kernel, in forward or backward, but its
autograd keeps what it reads: the input and the kernel branch's hidden features
``N x C/r x Ho x Wo``; the branch itself keeps its norm's input and statistics
(and, at stride > 1, its pooled input). All of it is a pooling, a 1x1
convolution, a norm and an activation away from the input, which the layer
before keeps anyway. So the forward runs without recording a graph, keeps the
input alone, and the backward regenerates the hidden features from it (with a
graph, to differentiate the branch) once.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmrednet.ops import involution_fused, involution_fused_backward

from .recompute import restored_buffers

# ``(kernel_size, stride, padding, dilation)`` of the fused op.
Geometry = Tuple[Sequence[int], Sequence[int], Sequence[int], Sequence[int]]


class _RegeneratedHiddenInvolution(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, hidden_of: Callable[[Tensor], Tensor], geometry: Geometry,
                branch: Sequence[nn.Module], weight: Tensor, bias: Optional[Tensor],
                *params: Tensor) -> Tensor:
        device = x.device.type
        # Backward runs outside autocast: regenerate under the forward's
        # autocast state, so the hidden features come back with the same
        # dtype and rounding and the gradients equal those of the kept ones.
        ctx.autocast = dict(device_type=device, enabled=torch.is_autocast_enabled(device),
                            dtype=torch.get_autocast_dtype(device))
        ctx.hidden_of, ctx.geometry, ctx.branch = hidden_of, geometry, branch
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, weight, *([bias] if ctx.has_bias else []), *params)
        kernel_size, *op_geometry = geometry
        return involution_fused(x, hidden_of(x), weight, kernel_size, bias, *op_geometry)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, weight, *params = ctx.saved_tensors
        bias = params.pop(0) if ctx.has_bias else None
        needs_x, needs_weight, needs_bias = (ctx.needs_input_grad[i] for i in (0, 4, 5))
        kernel_size, *op_geometry = ctx.geometry
        with torch.enable_grad():
            x = x.detach().requires_grad_(needs_x)
            inputs: List[Tensor] = ([x] if needs_x else []) + params  # of the kernel branch
            with torch.autocast(**ctx.autocast):
                with restored_buffers(*ctx.branch):
                    hidden = ctx.hidden_of(x)
                grad_x, grad_hidden, grad_weight, grad_bias = involution_fused_backward(
                    grad_output, x, hidden.detach(), weight, kernel_size, bias, *op_geometry,
                    output_mask=(needs_x, bool(inputs), needs_weight, needs_bias))
        # Through the kernel branch, outside autocast as any backward.
        grads = (list(torch.autograd.grad(hidden, inputs, grad_hidden, allow_unused=True))
                 if inputs else [])
        if needs_x:
            branch_grad_x = grads.pop(0)
            grad_x = grad_x if branch_grad_x is None else grad_x + branch_grad_x
        return (grad_x, None, None, None, grad_weight, grad_bias, *grads)


def involution_regenerating_hidden(x: Tensor, hidden_of: Callable[[Tensor], Tensor],
                                   weight: Tensor, bias: Optional[Tensor], geometry: Geometry,
                                   branch: Sequence[nn.Module]) -> Tensor:
    """``involution_fused(x, hidden_of(x), weight, kernel_size, bias, ...)``, keeping
    only ``x`` (and the span's ``weight`` and ``bias``) for backward.

    Args:
        x (Tensor): the layer input, ``(N, C, H, W)`` or ``(N, C, L)``.
        hidden_of (Callable): the kernel branch up to its span,
            ``x -> (N, C/r, Ho, Wo)`` (``(N, C/r, Lo)``); it must be
            deterministic, as it runs again in backward.
        weight (Tensor): the span's weight, as the 1x1 convolution stores it.
        bias (Tensor, optional): the span's bias.
        geometry (tuple): ``(kernel_size, stride, padding, dilation)`` of the op.
        branch (Sequence[nn.Module]): the modules ``hidden_of`` runs: their
            parameters get gradients, their running statistics are not
            updated again by the regeneration.

    Returns:
        Tensor: the involution output.
    """
    params = [p for module in branch for p in module.parameters() if p.requires_grad]
    span = [t for t in (weight, bias) if t is not None]
    if not (x.requires_grad or params or any(t.requires_grad for t in span)):
        kernel_size, *op_geometry = geometry  # nothing to differentiate: nothing to keep
        return involution_fused(x, hidden_of(x), weight, kernel_size, bias, *op_geometry)
    return _RegeneratedHiddenInvolution.apply(x, hidden_of, geometry, tuple(branch), weight,
                                              bias, *params)
