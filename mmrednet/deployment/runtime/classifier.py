"""mmpretrain's ImageClassifier with its logits from a deployed graph."""
from mmpretrain.models import ImageClassifier

from mmrednet.registry import MODELS

from ..backends import load_graphs
from .aliases import register_aliases


@MODELS.register_module()
class DeployedImageClassifier(ImageClassifier):
    """:class:`~mmpretrain.models.ImageClassifier` whose network runs in a deployed backend.

    Built from the exported config's ``model`` (``runtime_model_cfg``); the
    data preprocessor and the head's softmax/top-k are mmpretrain's.

    Args:
        deployment (str): the exported file (``main`` graph: image -> logits).
        backend (str): ``'onnxruntime'`` (an ``.onnx``) or ``'aoti'`` (a ``.pt2``).
        **kwargs: the arguments of ``ImageClassifier``.
    """

    def __init__(self, deployment: str, backend: str, **kwargs) -> None:
        graphs = load_graphs(deployment, backend)
        super().__init__(**kwargs)
        self.graphs = graphs

    def predict(self, inputs, data_samples=None, **kwargs):
        """As ``ImageClassifier.predict`` (``head.predict``), the logits from the graph."""
        [[logits]] = self.graphs['main'](inputs)
        return self.head._get_predictions(logits, data_samples)


register_aliases(DeployedImageClassifier, onnxruntime='ONNXRuntimeImageClassifier',
                 aoti='AOTIImageClassifier')
