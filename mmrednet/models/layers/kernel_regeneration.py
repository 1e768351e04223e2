"""Involution that keeps only its input for backward and regenerates its kernel there.

The generated kernel is ``N x G x K*K x H x W``: about three times the layer's
input for K=7 and 16 channels a group, and the kernel branch adds its norm
input and activation output. All of it is a few 1x1 convolutions away from
the input, which the layer before keeps anyway. So the forward runs without
recording a graph, keeps the input alone, and the backward regenerates the
kernel from it (with a graph, to differentiate the branch) once.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from mmrednet.ops import involution, involution_backward

from .recompute import restored_buffers

Geometry = Tuple[Sequence[int], Sequence[int], Sequence[int]]


class _RegeneratedKernelInvolution(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x: Tensor, generate: Callable[[Tensor], Tensor], geometry: Geometry,
                branch: Sequence[nn.Module], *params: Tensor) -> Tensor:
        device = x.device.type
        # Backward runs outside autocast: regenerate under the forward's
        # autocast state, so the kernel comes back with the same dtype and
        # rounding and the gradients equal those of the kept kernel.
        ctx.autocast = dict(device_type=device, enabled=torch.is_autocast_enabled(device),
                            dtype=torch.get_autocast_dtype(device))
        ctx.generate, ctx.geometry, ctx.branch = generate, geometry, branch
        ctx.save_for_backward(x, *params)
        return involution(x, generate(x), *geometry)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: Tensor) -> Tuple[Optional[Tensor], ...]:
        x, *params = ctx.saved_tensors
        needs_x = ctx.needs_input_grad[0]
        with torch.enable_grad():
            x = x.detach().requires_grad_(needs_x)
            with torch.autocast(**ctx.autocast):
                with restored_buffers(*ctx.branch):
                    kernel = ctx.generate(x)
                grad_x, grad_kernel = involution_backward(grad_output, x, kernel.detach(),
                                                          *ctx.geometry,
                                                          output_mask=(needs_x, True))
        # Through the kernel branch, outside autocast as any backward.
        inputs: List[Tensor] = ([x] if needs_x else []) + params
        grads = list(torch.autograd.grad(kernel, inputs, grad_kernel, allow_unused=True))
        if needs_x:
            branch_grad_x = grads.pop(0)
            grad_x = grad_x if branch_grad_x is None else grad_x + branch_grad_x
        return (grad_x, None, None, None, *grads)


def involution_regenerating_kernel(x: Tensor, generate: Callable[[Tensor], Tensor],
                                   geometry: Geometry, branch: Sequence[nn.Module]) -> Tensor:
    """``involution(x, generate(x), *geometry)``, keeping only ``x`` for backward.

    Args:
        x (Tensor): the layer input, ``(N, C, H, W)`` or ``(N, C, L)``.
        generate (Callable): the kernel branch, ``x -> (N, G, K, [K,] *out)``;
            it must be deterministic, as it runs again in backward.
        geometry (tuple): ``(stride, padding, dilation)`` of the op.
        branch (Sequence[nn.Module]): the modules ``generate`` runs: their
            parameters get gradients, their running statistics are not
            updated again by the regeneration.

    Returns:
        Tensor: the involution output.
    """
    params = [p for module in branch for p in module.parameters() if p.requires_grad]
    if not (x.requires_grad or params):  # nothing to differentiate: nothing to keep
        return involution(x, generate(x), *geometry)
    return _RegeneratedKernelInvolution.apply(x, generate, geometry, tuple(branch), *params)
