"""The export pipeline both backends share: from a config and a checkpoint to checked graphs.

``prepare_graphs`` loads the model and makes its graphs (``graphs.py``) over an
export-friendly copy (``rewrites.py``), with their check inputs
(``check_input.py``); a backend's exporter (``onnx/export.py``,
``aoti/export.py``) exports each graph, runs it in its backend and calls
``check_against_pytorch``, which refuses any output further from PyTorch than
``atol + rtol * max |pytorch|``. Nothing is written unless every graph passes,
and the files appear by rename, so an interrupted or refused export leaves no
partial file and an existing deployment at ``out`` intact.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import Tensor, nn
from torch.export import Dim

from ..utils import model_config
from . import check_input, graphs
from .metadata import GraphMetadata, num_classes_of
from .rewrites import export_friendly

ATOL, RTOL = 1e-4, 1e-4


class ExportCheckError(RuntimeError):
    """The exported model disagrees with PyTorch beyond the tolerance."""


@dataclass
class GraphExport:
    """One graph: what is exported, what it is checked against, and on which inputs.

    ``module`` wraps the export-friendly copy of the model (``rewrites.py``),
    ``reference`` the same graph of the original model.
    """
    name: str
    module: nn.Module
    reference: nn.Module
    example: Tensor
    checks: List[Tensor]
    input_name: str
    dynamic: Dict[int, object]


def load_model(config: str, checkpoint: str) -> Tuple[Config, nn.Module]:
    """The config's model with the checkpoint's weights, in eval mode on the CPU."""
    for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{what} file not found: {path}')
    import mmrednet  # noqa: F401  (mmengine's loaders read its checkpoints under weights_only)
    cfg = Config.fromfile(config)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = revert_sync_batchnorm(MODELS.build(model_config(cfg)))  # SyncBN: no process group
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
    except RuntimeError as error:  # missing, unexpected or misshapen keys
        raise ValueError(f'{checkpoint} does not fit {config}: {error}') from error
    return cfg, model.eval()


def _flat(groups: List[List[Tensor]]) -> List[Tensor]:
    return [t for group in groups for t in group]


def output_names(module: nn.Module, groups: List[List[Tensor]]) -> List[str]:
    names = module.group_names(len(groups))
    return [name if len(group) == 1 else f'{name}_{i}'
            for name, group in zip(names, groups, strict=True) for i in range(len(group))]


def _largest_difference(got: List[Tensor], expected: List[Tensor], names: Sequence[str],
                        atol: float, rtol: float,
                        backend: str = 'onnxruntime') -> Tuple[float, str, bool]:
    """``(max |got - expected|, where, within tolerance)``.

    The tolerance of an output is ``atol + rtol * max |expected|``: relative to
    the output's scale, as float32 rounding is, not to each element (a logit
    near 0 can be the sum of large terms).
    """
    worst, where, ok = 0.0, names[0], True
    for name, a, b in zip(names, got, expected, strict=True):
        if a.shape != b.shape:
            raise ExportCheckError(f'output {name}: {backend} gives shape {tuple(a.shape)}, '
                                   f'PyTorch {tuple(b.shape)}')
        if not b.numel():
            continue
        if not torch.isfinite(b).all():
            raise ExportCheckError(f'output {name}: PyTorch itself gives non-finite values on '
                                   'the check input, so the graph cannot be checked')
        # NaN from the backend counts as the largest difference, not as none.
        diff = (a - b).abs().max().nan_to_num(nan=float('inf')).item()
        ok = ok and diff <= atol + rtol * b.abs().max().item()
        if diff > worst:
            worst, where = diff, name
    return worst, where, ok


def expected_outputs(graph: GraphExport) -> List[List[List[Tensor]]]:
    """PyTorch's output groups of ``graph`` on each of its check inputs."""
    with torch.no_grad():
        return [graphs.as_groups(graph.reference(x)) for x in graph.checks]


def output_groups(graph: GraphExport, expected: List[List[List[Tensor]]]) -> List[tuple]:
    """``[(group name, output count), ...]`` of ``graph`` (its metadata's ``groups``)."""
    return [(name, len(group)) for name, group in
            zip(graph.module.group_names(len(expected[0])), expected[0], strict=True)]


def graph_metadata(cfg: Config, kind: str, graph: GraphExport,
                   expected: List[List[List[Tensor]]],
                   companions: Optional[Dict[str, str]] = None) -> GraphMetadata:
    """What ``graph`` of ``cfg``'s model records about itself (``metadata.py``).

    Args:
        cfg (Config): the exported config.
        kind (str): the model's kind (``graphs.model_kind``).
        graph (GraphExport): the graph.
        expected (list): PyTorch's outputs on its checks (``expected_outputs``).
        companions (dict, optional): graph name -> file name (an ``.onnx`` main graph).
    """
    return GraphMetadata(kind, cfg.model.type, graph.name, output_groups(graph, expected),
                         graphs.size_divisor(kind), companions or {}, num_classes_of(cfg.model))


def check_against_pytorch(graph: GraphExport, run: Callable, expected: List[List[List[Tensor]]],
                          atol: float, rtol: float, log: Callable[[str], None],
                          backend: str = 'onnxruntime') -> float:
    """Run the exported ``graph`` (``run``: input -> output groups) on its check inputs and
    compare with PyTorch's ``expected``; the largest difference.

    Raises:
        ExportCheckError: an output differs by more than ``atol + rtol * max |pytorch|``.
    """
    names = output_names(graph.module, expected[0])
    worst, where, all_ok = 0.0, names[0], True
    for check, reference in zip(graph.checks, expected, strict=True):
        diff, output, ok = _largest_difference(_flat(run(check)), _flat(reference), names,
                                               atol, rtol, backend)
        all_ok = all_ok and ok
        if diff >= worst:
            worst, where = diff, f'{output} on input {tuple(check.shape)}'
    inputs = ', '.join(str(tuple(check.shape)) for check in graph.checks)
    log(f'{graph.name}: largest |{backend} - pytorch| = {worst:.3g} ({where}; checked on '
        f'{inputs})')
    if not all_ok:
        raise ExportCheckError(
            f'the {graph.name} graph differs from PyTorch by up to {worst:.3g} ({where}), '
            f'more than {atol:g} + {rtol:g} * max |pytorch|; nothing was written')
    return worst


def _rpn_rois(model: nn.Module, input: Tensor, feats: Sequence[Tensor]) -> Tensor:
    """The RPN's proposals for ``input`` as RoIs ``(R, 5)``, as mmdet's RoI head gets them."""
    from mmdet.structures.bbox import bbox2roi
    metas = [dict(img_shape=tuple(input.shape[2:]), scale_factor=(1.0, 1.0))] * len(input)
    proposals = model.rpn_head.predict_by_feat(*model.rpn_head(feats), batch_img_metas=metas,
                                               rescale=False)
    return bbox2roi([p.bboxes for p in proposals])


def _roi_graphs(model: nn.Module, reference: nn.Module, example: Tensor,
                check: Tensor) -> List[GraphExport]:
    """The RoI head graphs, traced on RoI features of the example's proposals and checked
    on those of the check input's (mmcv's RoIAlign, as at run time), all of them and
    half of them (the RoI count is dynamic)."""
    roi_head = reference.roi_head
    with torch.no_grad():
        feats = {name: reference.extract_feat(x) for name, x in (('example', example),
                                                                 ('check', check))}
        rois = {name: _rpn_rois(reference, x, feats[name])
                for name, x in (('example', example), ('check', check))}
    exported, references = graphs.roi_graphs(model), graphs.roi_graphs(reference)
    result = []
    for name, module in exported.items():
        extractor = getattr(roi_head, name.replace('_head', '_roi_extractor'))
        with torch.no_grad():
            roi_feats = {k: extractor(feats[k][:extractor.num_inputs], rois[k]) for k in feats}
        checks = [roi_feats['check'], roi_feats['check'][:len(roi_feats['check']) // 2]]
        result.append(GraphExport(name, module, references[name], roi_feats['example'],
                                  [c for c in checks if len(c)] or [roi_feats['example']],
                                  'roi_feats', {0: Dim('rois', min=1)}))
    return result


def _image_dynamic(kind: str) -> Dict[int, object]:
    divisor = graphs.size_divisor(kind)
    if divisor == 1:
        return {0: Dim('batch', min=1), 2: Dim('height', min=32), 3: Dim('width', min=32)}
    return {0: Dim('batch', min=1), 2: divisor * Dim('height_blocks', min=1),
            3: divisor * Dim('width_blocks', min=1)}


def _second_batch(check: Tensor, shape: Tuple[int, int]) -> Tensor:
    """The dynamic graph's second check: batch 2 at another size, two different images.

    Batch 1 (the first check) catches a batch size baked in from the traced 2;
    two distinct images (the check image and its mirror) catch a graph that
    mixes the images of a batch, which batch 1 cannot show.
    """
    other = check_input.fit(check[:1], shape)
    return torch.cat([other, other.flip(-1)])


def _check_shape(shape: Tuple[int, int], divisor: int) -> None:
    if len(shape) != 2 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f'shape must be two positive ints (H W), got {shape!r}')
    if any(s % divisor for s in shape):
        raise ValueError(f'shape {shape[0]}x{shape[1]}: height and width must be multiples of '
                         f'{divisor} (the model\'s output stride), e.g. '
                         f'{"x".join(map(str, check_input.round_up(shape, divisor)))}')


def check_out(out: str, ext: str) -> None:
    """Refuse an output path without the extension ``ext`` or in a missing directory."""
    if not out.endswith(ext):
        raise ValueError(f'out must be a {ext} file, got {out!r}')
    directory = osp.dirname(osp.abspath(out))
    if not osp.isdir(directory):
        raise FileNotFoundError(f'output directory does not exist: {directory}')


def prepare_graphs(config: str, checkpoint: str, shape: Optional[Tuple[int, int]],
                   dynamic: bool, log: Callable[[str], None]
                   ) -> Tuple[Config, str, int, List[GraphExport]]:
    """The graphs to export from ``config`` + ``checkpoint``, with their check inputs:
    ``(cfg, kind, size divisor, graphs)``; ``shape``, ``dynamic``: as ``export_onnx``'s.
    The ONNX and the AOTInductor exporters share it."""
    cfg, model = load_model(config, checkpoint)
    kind = graphs.model_kind(model)
    divisor = graphs.size_divisor(kind)
    if shape is not None:
        _check_shape(tuple(shape), divisor)
    check, source = check_input.first_test_image(cfg, model)
    if shape is None:
        shape = tuple(check.shape[2:]) if check is not None else check_input.pipeline_shape(cfg)
        if shape is None:
            raise ValueError('give the export shape (--shape H W): the config\'s test set is '
                             'not there and its test pipeline has no fixed size')
        shape = check_input.round_up(shape, divisor)
    if check is None:
        log(f'check input: a deterministic random image ({source})')
        check = check_input.random_input(model, shape)
    else:
        log(f'check input: {source}')
        fits = tuple(check.shape[2:]) == tuple(shape) or (
            dynamic and not any(s % divisor for s in check.shape[2:]))
        check = check if fits else check_input.fit(check, shape)
    checks = [check]
    if dynamic:
        checks.append(_second_batch(check, (shape[0] + divisor, shape[1] + 2 * divisor)))
    # A traced batch of 1 would fix the batch size: trace dynamic graphs on 2.
    example = check_input.random_input(model, shape).repeat(2 if dynamic else 1, 1, 1, 1)
    log(f'exporting {type(model).__name__} ({kind}) at {shape[0]}x{shape[1]}'
        f'{", dynamic batch and size" if dynamic else ""}')

    friendly = export_friendly(model)
    todo = [GraphExport('main', graphs.image_graph(friendly, kind), graphs.image_graph(model, kind),
                        example, checks, 'input', _image_dynamic(kind) if dynamic else {})]
    if kind == graphs.TWO_STAGE_DETECTOR:
        todo += _roi_graphs(friendly, model, example, check)
    return cfg, kind, divisor, todo


