"""What each kind of model exports: the modules over tensors that become ONNX graphs.

Every learned layer runs in a graph; what stays in Python is the framework's
own post-processing (mmdet's ``predict_by_feat``: anchors, decoding, NMS;
RoIAlign; mask pasting; mmseg's crop/resize to the original image):

====================  =========================================================
kind                  graphs
====================  =========================================================
classifier            ``main``: image -> logits (mmpretrain ``mode='tensor'``)
segmentor             ``main``: image -> logits at input resolution
                      (mmseg ``encode_decode``)
detector              ``main``: image -> the head's raw maps (mmdet ``_forward``)
two_stage_detector    ``main``: image -> FPN maps + RPN maps;
                      ``bbox_head``: RoI features -> class scores, box deltas;
                      ``mask_head``: RoI features -> mask logits
====================  =========================================================
"""
import inspect
from typing import List, Sequence, Tuple

from torch import Tensor, nn

CLASSIFIER, SEGMENTOR, DETECTOR, TWO_STAGE_DETECTOR = (
    'classifier', 'segmentor', 'detector', 'two_stage_detector')
# Height and width of detector and segmentor inputs must be multiples of the
# backbone's output stride: the FPN adds each level to the 2x upsampled next one.
FPN_STRIDE = 32


class UnsupportedModelError(TypeError):
    """The model is of a type the exporter has no graphs for."""


def model_kind(model: nn.Module) -> str:
    """The kind of an OpenMMLab model (one of the table above), or a clear error."""
    kinds = []
    try:
        from mmpretrain.models import ImageClassifier
        kinds.append((ImageClassifier, CLASSIFIER))
    except ImportError:
        pass
    try:
        from mmseg.models import EncoderDecoder
        kinds.append((EncoderDecoder, SEGMENTOR))
    except ImportError:
        pass
    try:
        from mmdet.models import SingleStageDetector, StandardRoIHead, TwoStageDetector
        kinds += [(SingleStageDetector, DETECTOR), (TwoStageDetector, TWO_STAGE_DETECTOR)]
    except ImportError:
        StandardRoIHead = None
    name = type(model).__name__
    kind = next((kind for base, kind in kinds if isinstance(model, base)), None)
    if kind is None:
        raise UnsupportedModelError(
            f'ONNX export supports mmpretrain ImageClassifier, mmseg EncoderDecoder and '
            f'mmdet single-stage and two-stage detectors; got {name}')
    if kind == TWO_STAGE_DETECTOR:
        roi_head = model.roi_head
        if type(roi_head) is not StandardRoIHead or roi_head.with_shared_head:
            raise UnsupportedModelError(
                f'ONNX export of two-stage detectors needs mmdet\'s StandardRoIHead without '
                f'a shared head (Faster/Mask R-CNN); {name} has {type(roi_head).__name__}')
    return kind


def size_divisor(kind: str) -> int:
    """What the input height and width must be multiples of."""
    return 1 if kind == CLASSIFIER else FPN_STRIDE


def as_groups(outputs) -> List[List[Tensor]]:
    """A graph's outputs as groups of tensors: ``(list, list)`` or a tensor or a tuple."""
    if isinstance(outputs, Tensor):
        return [[outputs]]
    return [list(group) if isinstance(group, (list, tuple)) else [group] for group in outputs]


def _group_names(fn, count: int) -> List[str]:
    """The names of the first ``count`` parameters of ``fn`` (``predict_by_feat``'s inputs)."""
    names = list(inspect.signature(fn).parameters)[:count]
    return names + [f'output{i}' for i in range(len(names), count)]


class _ModelGraph(nn.Module):
    """A graph over a whole model's tensor computation."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


class ClassifierGraph(_ModelGraph):
    """``(N, 3, H, W) -> (N, num_classes)`` logits."""

    def forward(self, input: Tensor) -> Tensor:
        return self.model(input, mode='tensor')

    def group_names(self, count: int) -> List[str]:
        return ['logits']


class SegmentorGraph(_ModelGraph):
    """``(N, 3, H, W) -> (N, num_classes, H, W)``: mmseg's ``encode_decode`` of the input."""

    def forward(self, input: Tensor) -> Tensor:
        # A torch.Size img_shape makes the decode head resize to exactly it.
        return self.model.encode_decode(input, [dict(img_shape=input.shape[2:])])

    def group_names(self, count: int) -> List[str]:
        return ['seg_logits']


class DetectorGraph(_ModelGraph):
    """``(N, 3, H, W) ->`` the dense head's maps, e.g. ``(cls_scores, bbox_preds)`` per level."""

    def forward(self, input: Tensor) -> Tuple[List[Tensor], ...]:
        return self.model._forward(input)

    def group_names(self, count: int) -> List[str]:
        return _group_names(self.model.bbox_head.predict_by_feat, count)


class TwoStageFeatureGraph(_ModelGraph):
    """``(N, 3, H, W) -> (feats, rpn_cls_scores, rpn_bbox_preds)``, a list per level each."""

    def forward(self, input: Tensor) -> Tuple[List[Tensor], ...]:
        feats = self.model.extract_feat(input)
        return (list(feats), *self.model.rpn_head(feats))

    def group_names(self, count: int) -> List[str]:
        rpn = _group_names(self.model.rpn_head.predict_by_feat, count - 1)
        return ['feats'] + [f'rpn_{name}' for name in rpn]


class RoIHeadGraph(nn.Module):
    """A RoI head over RoI features ``(R, C, S, S)``: the bbox head or the mask head."""

    def __init__(self, head: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.head = head
        self.names = list(names)

    def forward(self, roi_feats: Tensor):
        return self.head(roi_feats)

    def group_names(self, count: int) -> List[str]:
        return self.names


def image_graph(model: nn.Module, kind: str) -> nn.Module:
    """The graph from the image, named ``main`` in the files."""
    graph = {CLASSIFIER: ClassifierGraph, SEGMENTOR: SegmentorGraph, DETECTOR: DetectorGraph,
             TWO_STAGE_DETECTOR: TwoStageFeatureGraph}[kind]
    return graph(model)


def roi_graphs(model: nn.Module) -> dict:
    """A two-stage detector's RoI head graphs: ``bbox_head`` and, with masks, ``mask_head``."""
    roi_head = model.roi_head
    graphs = dict(bbox_head=RoIHeadGraph(roi_head.bbox_head, ['cls_score', 'bbox_pred']))
    if roi_head.with_mask:
        graphs['mask_head'] = RoIHeadGraph(roi_head.mask_head, ['mask_preds'])
    return graphs
