"""The config of a model that runs an AOTInductor package (``.pt2``).

``tools/test.py --backend aoti --package model.pt2`` replaces the config's
``model`` with ``aoti_model_cfg(cfg.model, 'model.pt2')``. The models are the
onnxruntime ones (``runtime_*.py``: the framework's preprocessing and
post-processing around ``self.graphs``) with their graphs loaded from the
package instead (``aoti_backend.AOTIGraph`` answers as ``OnnxRuntimeGraph`` does).
"""
from mmengine.config import ConfigDict

from mmrednet.registry import MODELS

from . import graphs
from .aoti_backend import load_package
from .aoti_package import PackageInfo
from .runtime import _RUNTIME_TYPES, _short


def _aoti_type(onnx_type: str, module: str) -> str:
    """The registered AOTInductor twin of the onnxruntime model ``onnx_type``."""
    onnx_cls = getattr(__import__(f'{__package__}.{module}', fromlist=['_']), _short(onnx_type))
    name = _short(onnx_type).replace('ONNXRuntime', 'AOTI')
    if MODELS.get(name) is None:
        framework_cls = onnx_cls.__bases__[0]  # mmdet's / mmseg's / mmpretrain's model

        def __init__(self, package: str, **kwargs) -> None:
            framework_cls.__init__(self, **kwargs)
            self.graphs = load_package(package)
            if getattr(self, 'roi_head', None) is not None:
                self.roi_head.graphs = self.graphs

        doc = (f'``{onnx_cls.__name__}`` with its graphs from an AOTInductor package.\n\n'
               f'    Args:\n        package (str): the ``.pt2`` (tools/deployment/export_aoti.py).'
               f'\n        **kwargs: the arguments of ``{framework_cls.__name__}``.\n    ')
        MODELS.register_module(name=name, module=type(name, (onnx_cls, ), dict(
            __init__=__init__, __doc__=doc, __module__=__name__)))
    return f'mmrednet.{name}'


def aoti_model_cfg(model_cfg: dict, package: str) -> ConfigDict:
    """``model_cfg`` turned into the model that runs the AOTInductor ``package``.

    Raises a clear error when the file is not an mmrednet package, was exported
    from a model of another type, or cannot run in this process.
    """
    info = PackageInfo.read(package)
    if 'main' not in info.graphs:
        raise ValueError(f'{package} has no main graph; it is not a model deployment')
    meta = info.metadata('main')
    if _short(meta.model_type) != _short(model_cfg['type']):
        raise ValueError(f'{package} was exported from a {meta.model_type} model, but the '
                         f'config\'s model is {model_cfg["type"]}')
    cfg = ConfigDict(model_cfg, type=_aoti_type(*_RUNTIME_TYPES[meta.kind]), package=package)
    if meta.kind == graphs.TWO_STAGE_DETECTOR:
        cfg.roi_head = ConfigDict(cfg.roi_head, type='mmrednet.ONNXRuntimeRoIHead')
    return cfg
