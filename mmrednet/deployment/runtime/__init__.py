"""The models that run a deployment: the framework's own model (mmpretrain's
``ImageClassifier``, mmseg's ``EncoderDecoder``, mmdet's detectors) with its
network read from the exported graphs, in either backend.

``runtime_model_cfg`` makes one from a config's model; each model module
imports its framework, so it is imported only for a deployment of its kind.
"""
from .config import check_fits, runtime_model, runtime_model_cfg, use_deployment

__all__ = ['check_fits', 'runtime_model', 'runtime_model_cfg', 'use_deployment']
