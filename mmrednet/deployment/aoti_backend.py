"""The AOTInductor backend: a ``.pt2`` deployment's graphs in this process, called with
torch tensors as ``OnnxRuntimeGraph``s are (``ort_backend.py``)."""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .aoti_package import PackageInfo, check_compatible
from .metadata import GraphMetadata


def load_op_library() -> None:
    """Define the ``mmrednet::`` ops in this process (what the graphs call)."""
    from .. import ops  # noqa: F401  (registers them)


class AOTIGraph:
    """One graph of a package, compiled by AOTInductor (one input, flat outputs).

    Args:
        loader: its ``torch._C._aoti.AOTIModelPackageLoader``.
        metadata: what the graph says about itself (a ``GraphMetadata``).
        input_shape (list): the input's shape, ``None`` on dynamic axes.
        name (str): how error messages call it.
    """

    def __init__(self, loader, metadata: GraphMetadata, input_shape: List[Optional[int]],
                 name: str) -> None:
        self.loader, self.metadata, self.input_shape, self.name = (loader, metadata,
                                                                   input_shape, name)

    def _check(self, input: Tensor) -> None:
        expected = self.input_shape
        if input.dim() != len(expected) or any(
                d is not None and d != s for d, s in zip(expected, input.shape, strict=True)):
            static = all(d is not None for d in expected)
            shown = tuple('?' if d is None else d for d in expected)
            raise ValueError(f'{self.name} takes an input of shape {shown}, got '
                             f'{tuple(input.shape)}'
                             + ('; export with --dynamic for other batch and image sizes'
                                if static else ''))
        divisor = self.metadata.size_divisor
        if self.metadata.graph == 'main' and any(s % divisor for s in input.shape[2:]):
            raise ValueError(f'{self.name}: input height and width must be multiples of '
                             f'{divisor}, got {tuple(input.shape[2:])}; pad the images '
                             f'(e.g. the data preprocessor\'s pad_size_divisor={divisor})')
        if input.dtype != torch.float32:
            raise ValueError(f'{self.name} takes float32 input, got {input.dtype}')

    def __call__(self, input: Tensor) -> List[List[Tensor]]:
        """Run on ``input``; the outputs as groups (``metadata.groups``), on input's device."""
        self._check(input)
        outputs = iter(self.loader.run([input.detach().cpu().contiguous()]))
        return [[next(outputs).to(input.device) for _ in range(count)]
                for _, count in self.metadata.groups]


def load_package(path: str) -> Dict[str, AOTIGraph]:
    """Every graph of the ``.pt2`` at ``path``: graph name -> ``AOTIGraph``.

    Checks first that the package fits this process (torch, CPU, op library:
    ``aoti_package.check_compatible``), and loads the op library.
    """
    info = PackageInfo.read(path)
    if info.ops:
        load_op_library()
    check_compatible(info, path)
    result = {}
    for name in info.graphs:
        loader = torch._C._aoti.AOTIModelPackageLoader(path, name, False, 1, -1)
        result[name] = AOTIGraph(loader, info.metadata(name), info.inputs[name],
                                 path if name == 'main' else f'the {name} graph of {path}')
    return result
