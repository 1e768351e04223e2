"""mmpretrain's ImageClassifier with its logits from onnxruntime."""
from mmpretrain.models import ImageClassifier

from mmrednet.registry import MODELS

from .aoti_backend import load_package
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

    load_graphs = staticmethod(load_deployment)  # graph name -> graph

    def __init__(self, onnx_file: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.graphs = self.load_graphs(onnx_file)

    def predict(self, inputs, data_samples=None, **kwargs):
        """As ``ImageClassifier.predict`` (``head.predict``), the logits from onnxruntime."""
        [[logits]] = self.graphs['main'](inputs)
        return self.head._get_predictions(logits, data_samples)


@MODELS.register_module()
class AOTIImageClassifier(ONNXRuntimeImageClassifier):
    """:class:`ONNXRuntimeImageClassifier` with its graphs from an AOTInductor package.

    Args:
        package (str): the ``.pt2`` (``tools/deployment/export_aoti.py``).
        **kwargs: the arguments of ``ImageClassifier``.
    """
    load_graphs = staticmethod(load_package)

    def __init__(self, package: str, **kwargs) -> None:
        super().__init__(package, **kwargs)
