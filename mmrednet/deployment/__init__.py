"""Deployment: ONNX export and the onnxruntime backend; AOTInductor packages (``.pt2``).

``export_onnx`` writes checked graphs (``tools/deployment/export_onnx.py``);
``runtime.onnxruntime_model_cfg`` turns a config's model into one that runs
them (``tools/test.py --backend onnxruntime``). ``export_aoti`` writes a
checked ``.pt2`` (``tools/deployment/export_aoti.py``), ``load_package`` loads
its graphs and ``runtime_aoti.aoti_model_cfg`` runs them in the config's model
(``tools/test.py --backend aoti``).
"""
from .aoti_backend import AOTIGraph, load_package
from .aoti_export import export_aoti
from .exporter import export_onnx
from .involution_onnx import custom_translation_table
from .metadata import GraphMetadata
from .ort_backend import OnnxRuntimeGraph, load_deployment

__all__ = ['AOTIGraph', 'GraphMetadata', 'OnnxRuntimeGraph', 'custom_translation_table',
           'export_aoti', 'export_onnx', 'load_deployment', 'load_package']
