"""mmseg's EncoderDecoder with its logits from a deployed graph."""
from mmseg.models import EncoderDecoder

from mmrednet.registry import MODELS

from ..backends import load_graphs
from .aliases import register_aliases


@MODELS.register_module()
class DeployedEncoderDecoder(EncoderDecoder):
    """:class:`~mmseg.models.EncoderDecoder` whose ``encode_decode`` runs in a deployed backend.

    The exported graph is ``encode_decode`` itself (image -> logits at input
    resolution), so mmseg's whole and slide inference, test-time padding,
    cropping and resizing to the original image stay mmseg's.

    Args:
        deployment (str): the exported file (``main`` graph).
        backend (str): ``'onnxruntime'`` (an ``.onnx``) or ``'aoti'`` (a ``.pt2``).
        **kwargs: the arguments of ``EncoderDecoder``.
    """

    def __init__(self, deployment: str, backend: str, **kwargs) -> None:
        graphs = load_graphs(deployment, backend)
        super().__init__(**kwargs)
        self.graphs = graphs

    def encode_decode(self, inputs, batch_img_metas):
        """``(N, 3, H, W) -> (N, num_classes, H, W)`` logits, from the graph."""
        [[seg_logits]] = self.graphs['main'](inputs)
        return seg_logits


register_aliases(DeployedEncoderDecoder, onnxruntime='ONNXRuntimeEncoderDecoder',
                 aoti='AOTIEncoderDecoder')
