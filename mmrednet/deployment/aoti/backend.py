"""The AOTInductor backend: a ``.pt2`` deployment's graphs in this process, called with
torch tensors as the onnxruntime backend's graphs are (``onnx/backend.py``).

It needs neither onnx, onnxscript nor onnxruntime.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ... import ops  # noqa: F401  (defines the mmrednet:: ops that the graphs call)
from ..graph_input import graph_input
from ..metadata import GraphMetadata
from .package import PackageInfo, check_compatible


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


def read_main(path: str) -> Tuple[GraphMetadata, List[Optional[int]]]:
    """The ``main`` graph's metadata and input shape (``None`` on dynamic axes) of the
    package ``path``, read without loading its code."""
    info = PackageInfo.read(path)
    if 'main' not in info.graphs:
        raise ValueError(f'{path} has no main graph; it is not a model deployment')
    return info.metadata('main'), info.inputs['main']


def load_package(path: str) -> Dict[str, AOTIGraph]:
    """Every graph of the ``.pt2`` at ``path``: graph name -> ``AOTIGraph``.

    Checks first that the package fits this process (torch, CPU, op library:
    ``package.check_compatible``).
    """
    info = PackageInfo.read(path)
    check_compatible(info, path)
    result = {}
    for name in info.graphs:
        loader = torch._C._aoti.AOTIModelPackageLoader(path, info.model_name(name), False, 1, -1)
        result[name] = AOTIGraph(loader, info.metadata(name), info.inputs[name],
                                 path if name == 'main' else f'the {name} graph of {path}')
    return result
