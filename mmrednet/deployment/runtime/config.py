"""The config of a model that runs a deployment (an ``.onnx`` or a ``.pt2``).

``tools/test.py --backend aoti --package model.pt2`` replaces the config's
``model`` with ``runtime_model_cfg(cfg.model, 'model.pt2', 'aoti')``
(``use_deployment``): the same
model (data preprocessor, post-processing, test settings), its network replaced
by the exported graphs. The Runner, dataset and evaluator stay the config's.
"""
from typing import Callable

from mmengine.config import Config, ConfigDict

from .. import graphs
from ..backends import get_backend
from ..metadata import GraphMetadata, num_classes_of


def _short(type_name: str) -> str:
    return type_name.rsplit('.', 1)[-1]


def runtime_model(kind: str, path: str) -> type:
    """The runtime model of a deployment of ``kind`` (registered in ``mmrednet``'s scope).

    Each is imported here, with its framework (an optional extra: mmpretrain,
    mmseg or mmdet), only when a deployment of its kind is run.
    """
    if kind == graphs.CLASSIFIER:
        from .classifier import DeployedImageClassifier as model
    elif kind == graphs.SEGMENTOR:
        from .segmentor import DeployedEncoderDecoder as model
    elif kind == graphs.DETECTOR:
        from .detectors import DeployedSingleStageDetector as model
    elif kind == graphs.TWO_STAGE_DETECTOR:
        from .detectors import DeployedTwoStageDetector as model
    else:
        raise ValueError(f'{path} holds a {kind!r} graph, not a model deployment that '
                         'tools/test.py runs')
    return model


def check_fits(model_cfg: dict, meta: GraphMetadata, path: str) -> None:
    """Refuse a deployment exported from another model than ``model_cfg``: another type,
    or other ``num_classes`` (what decides its outputs; not recorded by older exports)."""
    if _short(meta.model_type) != _short(model_cfg['type']):
        raise ValueError(f'{path} was exported from a {meta.model_type} model, but the '
                         f'config\'s model is {model_cfg["type"]}')
    config_classes = num_classes_of(model_cfg)
    if meta.num_classes and meta.num_classes != config_classes:
        shown = ', '.join(f'{key}={value}' for key, value in sorted(meta.num_classes.items()))
        got = ', '.join(f'{key}={value}' for key, value in sorted(config_classes.items()))
        raise ValueError(f'{path} was exported with {shown}, but the config has '
                         f'{got or "no num_classes"}; give the config it was exported from')


def _model_cfg(model_cfg: dict, meta: GraphMetadata, path: str, backend: str) -> ConfigDict:
    check_fits(model_cfg, meta, path)
    model = runtime_model(meta.kind, path)
    cfg = ConfigDict(model_cfg, type=f'mmrednet.{model.__name__}', deployment=path,
                     backend=backend)
    if meta.kind == graphs.TWO_STAGE_DETECTOR:
        cfg.roi_head = ConfigDict(cfg.roi_head, type='mmrednet.DeployedRoIHead')
    return cfg


def runtime_model_cfg(model_cfg: dict, path: str, backend: str) -> ConfigDict:
    """``model_cfg`` turned into the model that runs the deployment at ``path``.

    Args:
        model_cfg (dict): the config's ``model``.
        path (str): the exported file: an ``.onnx`` (its ``main`` graph) or a ``.pt2``.
        backend (str): ``'onnxruntime'`` or ``'aoti'`` (``backends.BACKENDS``).

    Raises:
        ValueError: the file is not an mmrednet deployment, or was exported from
            another model (type or ``num_classes``); an unknown backend.
    """
    meta, _ = get_backend(backend).read_main(path)
    return _model_cfg(model_cfg, meta, path, backend)


def use_deployment(cfg: Config, path: str, backend: str,
                   log: Callable[[str], None] = print) -> None:
    """Make ``cfg`` test the deployment at ``path`` (``tools/test.py --backend``).

    Its model becomes the runtime model (``runtime_model_cfg``). A graph exported
    without ``--dynamic`` takes one batch size (1): the test dataloader then
    loads batches of that size, and ``log`` says so.
    """
    meta, shape = get_backend(backend).read_main(path)
    cfg.model = _model_cfg(cfg.model, meta, path, backend)
    batch = shape[0] if shape else None
    loader = cfg.get('test_dataloader')
    if isinstance(batch, int) and loader is not None and loader.get('batch_size') != batch:
        log(f'{path} takes batches of {batch} (exported without --dynamic): testing with '
            f'batch_size={batch}')
        loader.batch_size = batch
