"""Deployment: a config + checkpoint exported to ONNX (onnxruntime) or to an AOTInductor
package (``.pt2``), checked against PyTorch, and run in the config's own model.

The shared pipeline: ``graphs.py`` (what each kind of model exports),
``pipeline.py`` (load the model, make the graphs and their check inputs,
``check_against_pytorch``), ``rewrites.py`` (every export rewrite),
``metadata.py`` (what a graph records about itself), ``graph_input.py`` (the
input check both backends make), ``backends.py`` (the backends by name) and
``runtime/`` (the models that run a deployment: ``runtime_model_cfg``, used by
``tools/test.py --backend``). One folder per backend: ``onnx/`` (``export_onnx``,
the involution's translation, ``OnnxRuntimeGraph``) and ``aoti/``
(``export_aoti``, the package's record, ``load_package``, the C++ runner).

``export_onnx`` and ``custom_translation_table`` need onnx and onnxscript and
are imported on first use, so that loading a ``.pt2`` needs neither.
"""
import importlib

from .aoti.backend import AOTIGraph, load_package
from .aoti.export import export_aoti
from .backends import BACKENDS, Backend, get_backend, load_graphs
from .graph_input import GraphInputError
from .graphs import UnsupportedModelError
from .metadata import GraphMetadata
from .onnx.backend import OnnxRuntimeGraph, load_deployment
from .pipeline import (
    ExportCheckError,
    GraphExport,
    check_against_pytorch,
    load_model,
    prepare_graphs,
)
from .runtime import runtime_model_cfg, use_deployment

_NEEDS_ONNX = dict(export_onnx='.onnx.export', custom_translation_table='.onnx.translation')


def __getattr__(name: str):
    """``export_onnx`` and ``custom_translation_table``, imported on first use (PEP 562)."""
    if name not in _NEEDS_ONNX:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(_NEEDS_ONNX[name], __name__), name)


__all__ = ['AOTIGraph', 'BACKENDS', 'Backend', 'ExportCheckError', 'GraphExport',
           'GraphInputError', 'GraphMetadata', 'OnnxRuntimeGraph', 'UnsupportedModelError',
           'check_against_pytorch', 'custom_translation_table', 'export_aoti', 'export_onnx',
           'get_backend', 'load_deployment', 'load_graphs', 'load_model', 'load_package',
           'prepare_graphs', 'runtime_model_cfg', 'use_deployment']
