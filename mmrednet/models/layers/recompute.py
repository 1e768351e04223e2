"""Recomputing activations in backward instead of keeping them for it.

Recomputation runs norm layers a second time in training mode. The output is
the same (the batch statistics of the same input), but BN would also take the
batch into its running statistics a second time; :func:`restored_buffers`
undoes that second update.
"""
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


@contextmanager
def restored_buffers(*modules: nn.Module) -> Iterator[None]:
    """Leave the buffers of ``modules`` (running statistics, counters) as they were on entry."""
    # Snapshot at recomputation time, not at forward time: with gradient
    # accumulation, other forwards may have updated the statistics since.
    snapshot = [(buffer, buffer.clone()) for module in modules for buffer in module.buffers()]
    try:
        yield
    finally:
        # Through ``.data``, like norm layers' own running-statistics update:
        # autograd must not see a version bump here, or the recomputed norm,
        # which saved its running statistics, could not be differentiated.
        # Safe: in training mode its backward does not read them, and in eval
        # mode they were not changed.
        for buffer, value in snapshot:
            buffer.data.copy_(value)


def checkpoint_module(module: nn.Module, function: Callable[..., Tensor],
                      *inputs: Any) -> Tensor:
    """``function(*inputs)``, keeping only ``inputs`` for backward.

    Non-reentrant gradient checkpointing: ``function`` (which runs
    ``module``) is recomputed in backward, without touching ``module``'s
    running statistics again. Plain call without grad and under
    ``torch.compile`` (which plans its own recomputation).
    """
    if not torch.is_grad_enabled() or torch.compiler.is_compiling():
        return function(*inputs)
    return checkpoint(function, *inputs, use_reentrant=False,
                      context_fn=lambda: (nullcontext(), restored_buffers(module)))
