"""The config of a model that runs an exported deployment in onnxruntime.

``tools/test.py --backend onnxruntime --onnx model.onnx`` replaces the
config's ``model`` with ``onnxruntime_model_cfg(cfg.model, 'model.onnx')``:
the same model (data preprocessor, post-processing, test settings), its
network replaced by the exported graphs. The Runner, dataset and evaluator
stay the config's.
"""
import os.path as osp

import onnx
from mmengine.config import ConfigDict

from . import graphs
from .metadata import GraphMetadata

_RUNTIME_TYPES = {
    graphs.CLASSIFIER: ('mmrednet.ONNXRuntimeImageClassifier', 'runtime_classifier'),
    graphs.SEGMENTOR: ('mmrednet.ONNXRuntimeEncoderDecoder', 'runtime_segmentor'),
    graphs.DETECTOR: ('mmrednet.ONNXRuntimeSingleStageDetector', 'runtime_detectors'),
    graphs.TWO_STAGE_DETECTOR: ('mmrednet.ONNXRuntimeTwoStageDetector', 'runtime_detectors'),
}


def _short(type_name: str) -> str:
    return type_name.rsplit('.', 1)[-1]


def runtime_model_cfg(model_cfg: dict, meta: GraphMetadata, path: str,
                      backend: str = 'onnxruntime') -> ConfigDict:
    """``model_cfg`` turned into its ``backend`` runtime model (``ONNXRuntime*`` or ``AOTI*``).

    Args:
        model_cfg (dict): the config's ``model``.
        meta (GraphMetadata): the exported ``main`` graph's metadata.
        path (str): the exported file (``.onnx`` or ``.pt2``), the model's argument.
        backend (str): ``'onnxruntime'`` or ``'aoti'``.

    Raises:
        ValueError: the deployment was exported from a model of another type.
    """
    if _short(meta.model_type) != _short(model_cfg['type']):
        raise ValueError(f'{path} was exported from a {meta.model_type} model, but the '
                         f'config\'s model is {model_cfg["type"]}')
    runtime_type, module = _RUNTIME_TYPES[meta.kind]
    __import__(f'{__package__}.{module}')  # registers the runtime models
    if backend == 'aoti':
        cfg = ConfigDict(model_cfg, type=runtime_type.replace('ONNXRuntime', 'AOTI'),
                         package=path)
    else:
        cfg = ConfigDict(model_cfg, type=runtime_type, onnx_file=path)
    if meta.kind == graphs.TWO_STAGE_DETECTOR:
        cfg.roi_head = ConfigDict(cfg.roi_head, type='mmrednet.ONNXRuntimeRoIHead')
    return cfg


def onnxruntime_model_cfg(model_cfg: dict, onnx_file: str) -> ConfigDict:
    """``model_cfg`` turned into the onnxruntime model of the deployment at ``onnx_file``.

    Raises a clear error when the file is not an mmrednet deployment or was
    exported from a model of another type.
    """
    if not osp.isfile(onnx_file):
        raise FileNotFoundError(f'ONNX file not found: {onnx_file}')
    props = {p.key: p.value for p in onnx.load(onnx_file, load_external_data=False)
             .metadata_props}
    meta = GraphMetadata.read(props, onnx_file)
    if meta.graph != 'main':
        raise ValueError(f'{onnx_file} is the {meta.graph} graph of a deployment; give the '
                         'main .onnx file (the one without a graph name)')
    return runtime_model_cfg(model_cfg, meta, onnx_file)
