"""Keep the generated involution kernel out of the autograd graph.

The generated kernel is ``N x G x K*K x H x W``: about three times the layer's
input for K=7 and 16 channels a group. The involution op saves it for backward,
although it is one 1x1 convolution away from the small reduced feature that
the kernel branch saves anyway. Inside :func:`regenerate_in_backward` the op
saves a token instead, and backward regenerates the kernel from that feature.
"""
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor


class _Regenerate:
    """The token saved in place of the kernel: how to get it back, and its shape."""

    def __init__(self, generate: Callable[[], Tensor], shape: torch.Size) -> None:
        self.generate = generate
        self.shape = shape


@contextmanager
def regenerate_in_backward(kernel: Tensor, generate: Callable[[], Tensor]) -> Iterator[None]:
    """Save ``kernel`` for backward as a recipe: ``generate()`` recomputes it.

    Only tensors sharing ``kernel``'s storage and size are replaced (the op
    saves a view of it); everything else is saved as usual. ``generate`` must
    be deterministic given the saved tensors it closes over.
    """
    # Only plain ints from ``kernel``: autograd keeps the pack hook alive with
    # every tensor saved under it, so a closure over ``kernel`` itself would
    # keep the kernel alive until backward, the very memory this saves.
    storage, numel = kernel.untyped_storage().data_ptr(), kernel.numel()
    # Backward runs outside autocast: regenerate under the forward's autocast
    # state so the kernel comes back bit-identical (same dtype, same rounding).
    device = kernel.device.type
    autocast = dict(device_type=device, enabled=torch.is_autocast_enabled(device),
                    dtype=torch.get_autocast_dtype(device))

    def pack(t: Tensor):
        if t.untyped_storage().data_ptr() == storage and t.numel() == numel:
            return _Regenerate(generate, t.shape)
        return t

    def unpack(saved):
        if isinstance(saved, _Regenerate):
            with torch.no_grad(), torch.autocast(**autocast):
                return saved.generate().reshape(saved.shape)
        return saved

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield
