"""Deployment: ONNX export of RedNet models and the onnxruntime backend.

``export_onnx`` writes checked graphs (``tools/deployment/export_onnx.py``);
``runtime.onnxruntime_model_cfg`` turns a config's model into one that runs
them (``tools/test.py --backend onnxruntime``).
"""
from .exporter import export_onnx
from .involution_onnx import custom_translation_table
from .ort_backend import OnnxRuntimeGraph, load_deployment

__all__ = ['OnnxRuntimeGraph', 'custom_translation_table', 'export_onnx', 'load_deployment']
