"""mmseg's EncoderDecoder with its logits from onnxruntime."""
from mmseg.models import EncoderDecoder

from mmrednet.registry import MODELS

from .aoti_backend import load_package
from .ort_backend import load_deployment


@MODELS.register_module()
class ONNXRuntimeEncoderDecoder(EncoderDecoder):
    """:class:`~mmseg.models.EncoderDecoder` whose ``encode_decode`` runs in onnxruntime.

    The exported graph is ``encode_decode`` itself (image -> logits at input
    resolution), so mmseg's whole and slide inference, test-time padding,
    cropping and resizing to the original image stay mmseg's.

    Args:
        onnx_file (str): the exported ``.onnx`` (``main`` graph).
        **kwargs: the arguments of ``EncoderDecoder``.
    """

    load_graphs = staticmethod(load_deployment)  # graph name -> graph

    def __init__(self, onnx_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphs = self.load_graphs(onnx_file)

    def encode_decode(self, inputs, batch_img_metas):
        """``(N, 3, H, W) -> (N, num_classes, H, W)`` logits, from onnxruntime."""
        [[seg_logits]] = self.graphs['main'](inputs)
        return seg_logits


@MODELS.register_module()
class AOTIEncoderDecoder(ONNXRuntimeEncoderDecoder):
    """:class:`ONNXRuntimeEncoderDecoder` with its graphs from an AOTInductor package.

    Args:
        package (str): the ``.pt2`` (``tools/deployment/export_aoti.py``).
        **kwargs: the arguments of ``EncoderDecoder``.
    """
    load_graphs = staticmethod(load_package)

    def __init__(self, package: str, **kwargs) -> None:
        super().__init__(package, **kwargs)
