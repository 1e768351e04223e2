"""Layout changes between NCHW and channels-last whose gradient comes back in the source layout.

``Tensor.contiguous(memory_format=...)`` has two costs on CPU that RedNet's
channels-last path pays at every stage boundary:

- its copy is a generic strided loop, slower than a blocked transpose for
  these 4-D permutations (measured with two threads: 78 ms against 47 ms
  for a 1x256x200x334 map, 3.3 against 2.3 ms for 2x256x80x80);
- its backward hands the gradient on in whatever layout it arrives, so the
  layer before receives a gradient in another layout than its own output,
  and oneDNN's convolution and BN backward convert it themselves (BN
  backward with mixed layouts was several times slower than either layout).

:func:`to_memory_format` copies each sample as a 2-D ``(C, H*W)`` transpose,
which torch runs blocked, and converts the gradient back to the source layout.
"""
import torch
from torch import Tensor, nn
from torch.autograd import Function

_LAYOUTS = (torch.contiguous_format, torch.channels_last)


def _layout(t: Tensor):
    """The layout of a dense 4-D tensor: one of ``_LAYOUTS``, or None."""
    return next((f for f in _LAYOUTS if t.is_contiguous(memory_format=f)), None)


def _copy(t: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``t`` in ``memory_format`` (``t`` itself if it already is)."""
    if t.is_contiguous(memory_format=memory_format):
        return t
    if t.dim() != 4 or _layout(t) is None:
        return t.contiguous(memory_format=memory_format)
    n, c, h, w = t.shape
    out = torch.empty_like(t, memory_format=memory_format)
    # (C, H*W) in NCHW memory is the transpose of (H*W, C) in channels-last memory.
    if memory_format == torch.channels_last:
        src, dst = t.view(n, c, h * w), out.permute(0, 2, 3, 1).view(n, h * w, c)
    else:
        src, dst = t.permute(0, 2, 3, 1).view(n, h * w, c), out.view(n, c, h * w)
    for i in range(n):
        dst[i].copy_(src[i].t())
    return out


class _ToMemoryFormat(Function):

    @staticmethod
    def forward(ctx, x: Tensor, memory_format: torch.memory_format) -> Tensor:
        ctx.source = _layout(x) or torch.contiguous_format
        return _copy(x, memory_format)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _copy(grad, ctx.source), None


def to_memory_format(x: Tensor, memory_format: torch.memory_format) -> Tensor:
    """``x.contiguous(memory_format=memory_format)``, faster on CPU, gradient in x's layout.

    Args:
        x (Tensor): ``(N, C, H, W)``, NCHW or channels-last (any other tensor
            is copied as ``Tensor.contiguous`` would).
        memory_format (torch.memory_format): ``torch.contiguous_format`` or
            ``torch.channels_last``.

    Returns:
        Tensor: ``(N, C, H, W)`` in ``memory_format``; ``x`` itself when it
        already is.
    """
    if x.is_contiguous(memory_format=memory_format):
        return x
    if torch.compiler.is_compiling():  # layouts are the compiler's business
        return x.contiguous(memory_format=memory_format)
    return _ToMemoryFormat.apply(x, memory_format)


def _strides_of(param: Tensor, grad: Tensor) -> Tensor:
    """``grad`` as a view with ``param``'s strides, when its elements are in the same order."""
    if grad.stride() == param.stride() or not grad.is_contiguous():
        return grad
    view = grad.view(-1).view(grad.shape)  # the standard strides, no copy
    return view if view.stride() == param.stride() else grad


def match_grad_strides(module: nn.Module) -> nn.Module:
    """Give every parameter's gradient the parameter's own strides where that costs no copy.

    A 1x1 convolution's weight ``(O, I, 1, 1)`` can get its gradient with channels-last
    strides ``(I, 1, I, I)`` when the input is channels-last (as RedNet's on CPU), while the
    parameter has ``(I, 1, 1, 1)``. The elements are in the same order, so autograd's layout
    contract, which ignores size-1 dimensions, keeps that gradient; DDP compares all strides
    and warns "Grad strides do not match bucket view strides" for it. A hook on each such
    parameter hands autograd a view with the parameter's strides instead (no copy; other
    gradients pass unchanged).

    Args:
        module (nn.Module): Its parameters with a size-1 dimension get the hook.

    Returns:
        nn.Module: ``module``.
    """
    for param in module.parameters():
        if param.requires_grad and param.dim() > 1 and 1 in param.shape:
            param.register_hook(lambda grad, param=param: _strides_of(param, grad))
    return module
