"""The AOTInductor backend: a ``.pt2`` deployment's graphs in this process, called with
torch tensors as ``OnnxRuntimeGraph``s are (``ort_backend.py``)."""
from typing import Dict, List, Optional

import torch
from torch import Tensor

from .aoti_package import PackageInfo, check_compatible
from .graph_input import graph_input
from .metadata import GraphMetadata


def load_op_library() -> None:
    """Define the ``mmrednet::`` ops in this process (what the graphs call)."""
    from .. import ops  # noqa: F401  (registers them)


class AOTIGraph:
    """One graph of a package, compiled by AOTInductor (one input, flat outputs).

    It takes float32, as ``OnnxRuntimeGraph`` does (``graph_input``).

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

    def __call__(self, input: Tensor) -> List[List[Tensor]]:
        """Run on ``input`` (as float32: see ``graph_input``); the outputs as groups
        (``metadata.groups``), float32 on input's device."""
        outputs = iter(self.loader.run([graph_input(input, self.input_shape, self.metadata,
                                                    self.name)]))
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
