"""mmdet detectors whose learned layers run in a deployed backend; all post-processing is mmdet's.

- single-stage: the ``main`` graph gives the head's maps; ``bbox_head.predict_by_feat``
  makes anchors, decodes, and runs NMS.
- two-stage: the ``main`` graph gives the FPN maps and the RPN's maps;
  ``rpn_head.predict_by_feat`` makes the proposals; mmdet's
  ``StandardRoIHead.predict`` runs with its two tensor steps,
  ``_bbox_forward`` and ``_mask_forward``, as RoIAlign (mmcv) on the FPN maps
  followed by the ``bbox_head`` / ``mask_head`` graphs.
"""
from mmdet.models import SingleStageDetector, StandardRoIHead, TwoStageDetector

from mmrednet.registry import MODELS

from ..backends import load_graphs
from .aliases import register_aliases


def _metas(batch_data_samples):
    return [data_sample.metainfo for data_sample in batch_data_samples]


@MODELS.register_module()
class DeployedSingleStageDetector(SingleStageDetector):
    """:class:`~mmdet.models.SingleStageDetector` with backbone, neck and head deployed.

    Args:
        deployment (str): the exported file (``main`` graph: mmdet's ``_forward``).
        backend (str): ``'onnxruntime'`` (an ``.onnx``) or ``'aoti'`` (a ``.pt2``).
        **kwargs: the arguments of the exported detector (``SingleStageDetector``'s).
    """

    def __init__(self, deployment: str, backend: str, **kwargs) -> None:
        graphs = load_graphs(deployment, backend)
        super().__init__(**kwargs)
        self.graphs = graphs

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """mmdet's ``predict`` with the head's forward from the graph."""
        outs = self.graphs['main'](batch_inputs)
        results_list = self.bbox_head.predict_by_feat(
            *outs, batch_img_metas=_metas(batch_data_samples), rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)


@MODELS.register_module()
@MODELS.register_module(name='ONNXRuntimeRoIHead')  # its older name (saved configs)
class DeployedRoIHead(StandardRoIHead):
    """:class:`~mmdet.models.StandardRoIHead` with the bbox and mask heads deployed.

    ``graphs`` (graph name -> graph) is set by the detector.
    RoI features come from mmcv's RoIAlign in the configured extractors.
    """

    graphs = None

    def _bbox_forward(self, x, rois):
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        [[cls_score], [bbox_pred]] = self.graphs['bbox_head'](bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def _mask_forward(self, x, rois=None, pos_inds=None, bbox_feats=None):
        if rois is None:
            raise NotImplementedError('DeployedRoIHead runs inference only (RoIs given)')
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
        [[mask_preds]] = self.graphs['mask_head'](mask_feats)
        return dict(mask_preds=mask_preds, mask_feats=mask_feats)


@MODELS.register_module()
class DeployedTwoStageDetector(TwoStageDetector):
    """:class:`~mmdet.models.TwoStageDetector` (Faster/Mask R-CNN) with every learned
    layer deployed.

    Args:
        deployment (str): the exported file (``main`` graph; an ``.onnx`` names the
            RoI head graphs beside it, a ``.pt2`` holds them).
        backend (str): ``'onnxruntime'`` (an ``.onnx``) or ``'aoti'`` (a ``.pt2``).
        **kwargs: the arguments of the exported detector, with
            ``roi_head.type='mmrednet.DeployedRoIHead'``.
    """

    def __init__(self, deployment: str, backend: str, **kwargs) -> None:
        graphs = load_graphs(deployment, backend)
        super().__init__(**kwargs)
        self.graphs = graphs
        self.roi_head.graphs = self.graphs

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """mmdet's ``TwoStageDetector.predict`` with FPN and RPN maps from the graph."""
        feats, *rpn_outs = self.graphs['main'](batch_inputs)
        if batch_data_samples[0].get('proposals', None) is None:
            rpn_results_list = self.rpn_head.predict_by_feat(
                *rpn_outs, batch_img_metas=_metas(batch_data_samples), rescale=False)
        else:
            rpn_results_list = [data_sample.proposals for data_sample in batch_data_samples]
        results_list = self.roi_head.predict(feats, rpn_results_list, batch_data_samples,
                                             rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)


register_aliases(DeployedSingleStageDetector, onnxruntime='ONNXRuntimeSingleStageDetector',
                 aoti='AOTISingleStageDetector')
register_aliases(DeployedTwoStageDetector, onnxruntime='ONNXRuntimeTwoStageDetector',
                 aoti='AOTITwoStageDetector')
