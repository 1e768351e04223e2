"""mmpretrain's ImageClassifier with its logits from onnxruntime."""
from mmpretrain.models import ImageClassifier

from mmrednet.registry import MODELS

from .ort_backend import load_deployment


@MODELS.register_module()
class ONNXRuntimeImageClassifier(ImageClassifier):
    """:class:`~mmpretrain.models.ImageClassifier` whose network runs in onnxruntime.

    Built from the exported config's ``model`` (``runtime.onnxruntime_model_cfg``);
    the data preprocessor and the head's softmax/top-k are mmpretrain's.

    Args:
        onnx_file (str): the exported ``.onnx`` (``main`` graph: image -> logits).
        **kwargs: the arguments of ``ImageClassifier``.
    """

    def __init__(self, onnx_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphs = load_deployment(onnx_file)

    def predict(self, inputs, data_samples=None, **kwargs):
        """As ``ImageClassifier.predict`` (``head.predict``), the logits from onnxruntime."""
        [[logits]] = self.graphs['main'](inputs)
        return self.head._get_predictions(logits, data_samples)
