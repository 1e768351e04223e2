"""mmdet detectors whose learned layers run in onnxruntime; all post-processing is mmdet's.

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

from .aoti_backend import load_package
from .ort_backend import load_deployment


def _metas(batch_data_samples):
    return [data_sample.metainfo for data_sample in batch_data_samples]


@MODELS.register_module()
class ONNXRuntimeSingleStageDetector(SingleStageDetector):
    """:class:`~mmdet.models.SingleStageDetector` with backbone, neck and head in onnxruntime.

    Args:
        onnx_file (str): the exported ``.onnx`` (``main`` graph: mmdet's ``_forward``).
        **kwargs: the arguments of the exported detector (``SingleStageDetector``'s).
    """

    load_graphs = staticmethod(load_deployment)  # graph name -> graph

    def __init__(self, onnx_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphs = self.load_graphs(onnx_file)

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """mmdet's ``predict`` with the head's forward from onnxruntime."""
        outs = self.graphs['main'](batch_inputs)
        results_list = self.bbox_head.predict_by_feat(
            *outs, batch_img_metas=_metas(batch_data_samples), rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)


@MODELS.register_module()
class ONNXRuntimeRoIHead(StandardRoIHead):
    """:class:`~mmdet.models.StandardRoIHead` with the bbox and mask heads in onnxruntime.

    ``graphs`` (graph name -> ``OnnxRuntimeGraph``) is set by the detector.
    RoI features come from mmcv's RoIAlign in the configured extractors.
    """

    graphs = None

    def _bbox_forward(self, x, rois):
        bbox_feats = self.bbox_roi_extractor(x[:self.bbox_roi_extractor.num_inputs], rois)
        [[cls_score], [bbox_pred]] = self.graphs['bbox_head'](bbox_feats)
        return dict(cls_score=cls_score, bbox_pred=bbox_pred, bbox_feats=bbox_feats)

    def _mask_forward(self, x, rois=None, pos_inds=None, bbox_feats=None):
        if rois is None:
            raise NotImplementedError('ONNXRuntimeRoIHead runs inference only (RoIs given)')
        mask_feats = self.mask_roi_extractor(x[:self.mask_roi_extractor.num_inputs], rois)
        [[mask_preds]] = self.graphs['mask_head'](mask_feats)
        return dict(mask_preds=mask_preds, mask_feats=mask_feats)


@MODELS.register_module()
class ONNXRuntimeTwoStageDetector(TwoStageDetector):
    """:class:`~mmdet.models.TwoStageDetector` (Faster/Mask R-CNN) with every learned
    layer in onnxruntime.

    Args:
        onnx_file (str): the exported ``.onnx`` (``main`` graph; it names the RoI
            head graphs beside it).
        **kwargs: the arguments of the exported detector, with
            ``roi_head.type='mmrednet.ONNXRuntimeRoIHead'``.
    """

    load_graphs = staticmethod(load_deployment)  # graph name -> graph

    def __init__(self, onnx_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphs = self.load_graphs(onnx_file)
        self.roi_head.graphs = self.graphs

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """mmdet's ``TwoStageDetector.predict`` with FPN and RPN maps from onnxruntime."""
        feats, *rpn_outs = self.graphs['main'](batch_inputs)
        if batch_data_samples[0].get('proposals', None) is None:
            rpn_results_list = self.rpn_head.predict_by_feat(
                *rpn_outs, batch_img_metas=_metas(batch_data_samples), rescale=False)
        else:
            rpn_results_list = [data_sample.proposals for data_sample in batch_data_samples]
        results_list = self.roi_head.predict(feats, rpn_results_list, batch_data_samples,
                                             rescale=rescale)
        return self.add_pred_to_datasample(batch_data_samples, results_list)


@MODELS.register_module()
class AOTISingleStageDetector(ONNXRuntimeSingleStageDetector):
    """:class:`ONNXRuntimeSingleStageDetector` with its graphs from an AOTInductor package.

    Args:
        package (str): the ``.pt2`` (``tools/deployment/export_aoti.py``).
        **kwargs: the arguments of ``SingleStageDetector``.
    """
    load_graphs = staticmethod(load_package)

    def __init__(self, package: str, **kwargs) -> None:
        super().__init__(package, **kwargs)


@MODELS.register_module()
class AOTITwoStageDetector(ONNXRuntimeTwoStageDetector):
    """:class:`ONNXRuntimeTwoStageDetector` with its graphs from an AOTInductor package.

    Args:
        package (str): the ``.pt2`` (``tools/deployment/export_aoti.py``).
        **kwargs: the arguments of ``TwoStageDetector``.
    """
    load_graphs = staticmethod(load_package)

    def __init__(self, package: str, **kwargs) -> None:
        super().__init__(package, **kwargs)
