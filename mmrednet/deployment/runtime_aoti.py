"""The config of a model that runs an AOTInductor package (``.pt2``).

``tools/test.py --backend aoti --package model.pt2`` replaces the config's
``model`` with ``aoti_model_cfg(cfg.model, 'model.pt2')``. The models
(``AOTI*`` in ``runtime_*.py``) are the onnxruntime ones (the framework's
preprocessing and post-processing around ``self.graphs``) with their graphs
loaded from the package (``aoti_backend.AOTIGraph`` answers as
``OnnxRuntimeGraph`` does).
"""
from mmengine.config import ConfigDict

from .aoti_package import PackageInfo
from .runtime import runtime_model_cfg


def aoti_model_cfg(model_cfg: dict, package: str) -> ConfigDict:
    """``model_cfg`` turned into the model that runs the AOTInductor ``package``.

    Raises a clear error when the file is not an mmrednet package, was exported
    from a model of another type, or cannot run in this process.
    """
    info = PackageInfo.read(package)
    if 'main' not in info.graphs:
        raise ValueError(f'{package} has no main graph; it is not a model deployment')
    return runtime_model_cfg(model_cfg, info.metadata('main'), package, backend='aoti')
