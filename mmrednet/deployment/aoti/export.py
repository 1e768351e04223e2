"""Export a config + checkpoint to an AOTInductor package (``.pt2``), check it, then write it.

The same graphs and checks as the ONNX exporter (the shared ``pipeline.py``):
what the framework does in Python (mmdet's decoding and NMS, RoIAlign, mmseg's
resizing) stays in Python; every graph is ``torch.export``-ed and compiled by
AOTInductor with ``freezing`` (BN folded into the convolutions, weights
pre-packed), and all of them go into one ``.pt2`` with ``extra/mmrednet.json``
(``package.PackageInfo``). Nothing is written unless every graph, loaded
from the package as a user would load it, agrees with PyTorch on the check
input within ``atol + rtol * max |pytorch|`` per output; the package appears
by rename.
"""
import os
import os.path as osp
import warnings
from dataclasses import asdict
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.export.dynamic_shapes import _DerivedDim
from torch.export.pt2_archive._package import package_pt2

from .. import graphs
from ..metadata import GraphMetadata
from ..pipeline import (
    ATOL,
    RTOL,
    GraphExport,
    check_against_pytorch,
    check_out,
    expected_outputs,
    graph_metadata,
    prepare_graphs,
)
from ..rewrites import composed, shape_generic
from .backend import load_package
from .package import INFO_FILE, PackageInfo

BACKEND = 'aoti'  # in the check's messages: largest |aoti - pytorch|


def called_ops(program: torch.export.ExportedProgram, namespace: str = 'mmrednet') -> List[str]:
    """The ``namespace::`` ops the exported graph calls, e.g. ``['mmrednet::involution']``."""
    ops = {node.target.name().split('.', 1)[0] for node in program.graph.nodes
           if node.op == 'call_function' and isinstance(node.target, torch._ops.OpOverload)
           and node.target.namespace == namespace}
    return sorted(ops)


def _inferred_ranges(dynamic: Dict[int, object]) -> Dict[int, object]:
    """The exporter's dynamic axes with the ranges of plain dims left to ``torch.export``.

    ``Dim('height', min=32)`` fails export when the graph needs more (a RedNet
    whose last map would be 1x1 at 32 specializes there); ``Dim.AUTO`` takes the
    range the graph supports, which AOTInductor then checks on every call
    (a clear error naming the axis and its minimum). Multiples of the stride
    (``32 * Dim``) stay as given.
    """
    return {axis: dim if isinstance(dim, _DerivedDim) else torch.export.Dim.AUTO
            for axis, dim in dynamic.items()}


def compile_module(module: nn.Module, example: torch.Tensor,
                   dynamic: Optional[Dict[int, object]] = None,
                   threads: Optional[int] = None,
                   compose_fused: bool = False) -> Tuple[list, List[str]]:
    """``torch.export`` + AOTInductor (frozen weights): ``(package files, ops called)``.

    AOTInductor specializes its own loops for ``threads`` (default: torch's
    intra-op threads now); one thread compiles them serial. ``compose_fused``:
    the fused involution compiled as its composition (``rewrites.composed``,
    the benchmark's baseline).
    """
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # export's notes on mmdet/mmseg internals
        program = torch.export.export(module, (example, ),
                                      dynamic_shapes=((_inferred_ranges(dynamic), )
                                                      if dynamic else None),
                                      strict=False)
        if compose_fused:
            program = composed(program)
        files = torch._inductor.aot_compile(
            program.module(check_guards=False), (example, ),
            options={'aot_inductor.package': True, 'freezing': True,
                     'cpp.threads': threads or torch.get_num_threads()})
    return files, called_ops(program)


def package(out: str, files: Dict[str, list], info: PackageInfo) -> None:
    """Write the graphs' AOTInductor files (graph name -> files) and ``info`` as one
    ``.pt2`` at ``out``, each graph under its model name (``PackageInfo.model_name``)."""
    package_pt2(out, aoti_files={info.model_name(graph): graph_files
                                 for graph, graph_files in files.items()},
                extra_files={INFO_FILE: info.to_json()})


def _input_shape(graph: GraphExport) -> List[Optional[int]]:
    return [None if axis in graph.dynamic else size for axis, size in
            enumerate(graph.example.shape)]


def export_aoti(config: str, checkpoint: str, out: str,
                shape: Optional[Tuple[int, int]] = None, dynamic: bool = False,
                atol: float = ATOL, rtol: float = RTOL, threads: Optional[int] = None,
                log: Callable[[str], None] = print) -> Dict[str, float]:
    """Export the model of ``config`` with ``checkpoint`` to the ``.pt2`` package ``out``.

    Args:
        config (str): an mmpretrain, mmseg or mmdet config.
        checkpoint (str): its weights.
        out (str): the ``.pt2`` to write (every graph of the model in it).
        shape (tuple, optional): ``(H, W)`` to export (and, without
            ``dynamic``, the only size the package takes; the batch is then 1).
            Default: the size of the first test image, else the test
            pipeline's resize/crop size, rounded up to the model's stride.
        dynamic (bool): dynamic batch size and image size (multiples of 32
            for detectors and segmentors); RoI counts are always dynamic.
        atol, rtol (float): the check's tolerance against PyTorch.
        threads (int, optional): the threads AOTInductor's own loops are
            compiled for (default: torch's intra-op threads in this process);
            the ops it calls (convolutions, involution) use the runtime's.
        log (callable): where progress lines go.

    Returns:
        dict: graph name -> largest difference from PyTorch on the check inputs.
    """
    check_out(out, '.pt2')
    cfg, kind, _, todo = prepare_graphs(config, checkpoint, shape, dynamic, log)
    files, metadata, expected, ops = {}, {}, {}, set()
    for graph in todo:
        expected[graph.name] = expected_outputs(graph)
        metadata[graph.name] = graph_metadata(cfg, kind, graph, expected[graph.name])
        log(f'{graph.name}: exporting and compiling with AOTInductor ...')
        module = shape_generic(graph.module) if graph.dynamic else graph.module
        files[graph.name], called = compile_module(module, graph.example, graph.dynamic, threads)
        ops.update(called)
    info = PackageInfo(graphs={name: asdict(meta) for name, meta in metadata.items()},
                       inputs={graph.name: _input_shape(graph) for graph in todo},
                       ops=sorted(ops))
    root, _ = osp.splitext(out)
    temp = f'{root}.{os.getpid()}.tmp.pt2'
    try:
        package(temp, files, info)
        loaded = load_package(temp)
        diffs = {graph.name: check_against_pytorch(graph, loaded[graph.name],
                                                   expected[graph.name], atol, rtol, log,
                                                   BACKEND) for graph in todo}
        os.replace(temp, out)
    finally:
        if osp.exists(temp):
            os.remove(temp)
    log(f'wrote {out}')
    return diffs


def temporary_package(module: nn.Module, example: torch.Tensor, directory: str,
                      name: str = 'model', compose_fused: bool = False) -> str:
    """``module`` at ``example``'s shape as a ``.pt2`` in ``directory`` (benchmarks, tests):
    one ``main`` graph whose outputs are one group; ``compose_fused``: as ``compile_module``'s."""
    with torch.no_grad():
        count = len([t for group in graphs.as_groups(module(example)) for t in group])
    files, ops = compile_module(module, example, compose_fused=compose_fused)
    meta = GraphMetadata(name, name, 'main', [('out', count)])
    path = osp.join(directory, f'{name}.pt2')
    package(path, dict(main=files), PackageInfo(
        graphs=dict(main=asdict(meta)), inputs=dict(main=list(example.shape)), ops=ops))
    return path
