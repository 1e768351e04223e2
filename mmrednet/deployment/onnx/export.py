"""Export a config + checkpoint to ONNX, check it in onnxruntime, then write it.

The graphs and their checks are the shared pipeline's (``pipeline.py``); this
module turns each graph into ONNX (the involution through ``translation.py``),
runs it in onnxruntime (``backend.py``) and writes the files: ``model.onnx``
(the ``main`` graph, naming its companions) and, for two-stage detectors,
``model.bbox_head.onnx`` and ``model.mask_head.onnx`` beside it, together by rename.
"""
import os
import os.path as osp
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import onnx
import onnxscript.optimizer
import torch
from torch import Tensor, nn

from ..metadata import GraphMetadata, companion_path
from ..pipeline import (
    ATOL,
    RTOL,
    GraphExport,
    check_against_pytorch,
    check_out,
    expected_outputs,
    graph_metadata,
    output_names,
    prepare_graphs,
)
from .backend import METADATA_KEY, OnnxRuntimeGraph
from .translation import OPSET, custom_translation_table


def write_metadata(metadata: GraphMetadata, model: onnx.ModelProto) -> None:
    """Record ``metadata`` in ``model``'s ``metadata_props`` (``backend.metadata_of`` reads it)."""
    onnx.helper.set_model_props(model, {METADATA_KEY: metadata.to_json()})


def to_onnx(module: nn.Module, args: Tuple[Tensor, ...], input_names: Sequence[str],
            output_names: Sequence[str],
            dynamic_shapes: Optional[Tuple[Dict[int, object], ...]] = None,
            translation_table: Optional[dict] = None) -> onnx.ModelProto:
    """``torch.onnx.export(..., dynamo=True)`` with the involution translation, opset 18.

    ``dynamic_shapes``: per input, ``{axis: torch.export.Dim}`` (None: all static).
    ``translation_table``: another ``custom_translation_table`` (the benchmark's
    alternative form of the op); default: ``translation.py``'s.
    The exporter's default optimizer is replaced by constant folding and dead
    node removal: its pattern rewriter took 170 s on a RedNet-26 RetinaNet
    (2,500 nodes, most of them involution taps) against 4 s for export and
    folding, for a graph that runs as fast in onnxruntime (which does its own
    fusions when it loads a model).
    """
    with torch.no_grad(), warnings.catch_warnings():
        # The exporter warns about renamed dynamic axes and deprecated internals.
        warnings.simplefilter('ignore')
        program = torch.onnx.export(
            module, tuple(args), dynamo=True, opset_version=OPSET, verbose=False, optimize=False,
            custom_translation_table=translation_table or custom_translation_table(),
            input_names=list(input_names),
            output_names=list(output_names), dynamic_shapes=dynamic_shapes)
    onnxscript.optimizer.fold_constants(program.model)
    onnxscript.optimizer.remove_unused_nodes(program.model)
    proto = program.model_proto
    onnx.checker.check_model(proto)
    return proto


def export_and_check(graph: GraphExport, expected: List[List[List[Tensor]]],
                     metadata: GraphMetadata, atol: float, rtol: float,
                     log: Callable[[str], None]) -> Tuple[onnx.ModelProto, float]:
    """Export ``graph`` with ``metadata`` in it, run it in onnxruntime on its check inputs
    and compare with PyTorch's ``expected`` outputs: ``(the model, the largest difference)``.
    """
    names = output_names(graph.module, expected[0])
    log(f'{graph.name}: exporting ({len(names)} outputs) ...')
    proto = to_onnx(graph.module, (graph.example, ), [graph.input_name], names,
                    (graph.dynamic, ) if graph.dynamic else None)
    write_metadata(metadata, proto)
    session = OnnxRuntimeGraph(proto.SerializeToString(), name=f'the {graph.name} graph')
    return proto, check_against_pytorch(graph, session, expected, atol, rtol, log)


def _write(files: Dict[str, onnx.ModelProto]) -> None:
    """Write every file beside its target, then rename them all into place."""
    temps = {}
    try:
        for path, proto in files.items():
            temps[path] = f'{path}.{os.getpid()}.tmp'
            with open(temps[path], 'xb') as f:  # mode 0666 & ~umask, like any new file
                f.write(proto.SerializeToString())
        for path, temp in temps.items():
            os.replace(temp, path)
    finally:
        for temp in temps.values():
            if osp.exists(temp):
                os.remove(temp)


def export_onnx(config: str, checkpoint: str, out: str,
                shape: Optional[Tuple[int, int]] = None, dynamic: bool = False,
                atol: float = ATOL, rtol: float = RTOL,
                log: Callable[[str], None] = print) -> Dict[str, float]:
    """Export the model of ``config`` with ``checkpoint`` to ``out`` (and its companions).

    Args:
        config (str): an mmpretrain, mmseg or mmdet config.
        checkpoint (str): its weights.
        out (str): the ``.onnx`` file of the ``main`` graph; a two-stage
            detector's RoI heads go beside it (``metadata.companion_path``).
        shape (tuple, optional): ``(H, W)`` to export (and, without
            ``dynamic``, the only size the graph takes; the batch is then 1).
            Default: the size of the first test image, else the test
            pipeline's resize/crop size, rounded up to the model's stride.
        dynamic (bool): dynamic batch size and image size (multiples of 32
            for detectors and segmentors); RoI counts are always dynamic. The
            graph is then also checked at batch 2 and another size.
        atol, rtol (float): the check's tolerance against PyTorch.
        log (callable): where progress lines go.

    Returns:
        dict: graph name -> largest difference from PyTorch on the check input.
    """
    check_out(out, '.onnx')
    cfg, kind, _, todo = prepare_graphs(config, checkpoint, shape, dynamic, log)
    paths = {g.name: out if g.name == 'main' else companion_path(out, g.name) for g in todo}
    companions = {name: osp.basename(path) for name, path in paths.items() if name != 'main'}
    files, diffs = {}, {}
    for graph in todo:
        expected = expected_outputs(graph)
        metadata = graph_metadata(cfg, kind, graph, expected,
                                  companions if graph.name == 'main' else None)
        files[paths[graph.name]], diffs[graph.name] = export_and_check(
            graph, expected, metadata, atol, rtol, log)
    _write(files)
    for path in files:
        log(f'wrote {path}')
    return diffs
