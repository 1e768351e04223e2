"""Which operators ran, and on what tensors: a dispatch mode that records every call."""
from typing import Iterator, List, Set, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class OpRecorder(TorchDispatchMode):
    """Records the operators that reach the dispatcher (forward and, on the
    CPU, where autograd runs on the calling thread, backward too).

    Only the calls made while recording: the ops a custom op's own kernel runs
    are not seen, so what the layer asks for is told apart from how a backend
    computes it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[Tuple[str, List[torch.Tensor]]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_leaves((args, kwargs, out)) if isinstance(t, torch.Tensor)]
        self.calls.append((func._schema.name, tensors))
        return out

    def names(self) -> Set[str]:
        """Qualified names of the ops that ran, e.g. ``'mmrednet::involution_fused'``."""
        return {name for name, _ in self.calls}

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor an op read or wrote."""
        for _, tensors in self.calls:
            yield from tensors
