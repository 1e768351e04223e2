"""The ONNX backend: ``export.py`` (the exporter: ``export_onnx``), ``translation.py``
(the involution in standard ONNX ops) and ``backend.py`` (graphs in onnxruntime).

Nothing is imported here: ``backend.py`` imports onnx and onnxruntime only when
it runs a graph, so that the backends table (``backends.py``) and a process
that runs only ``.pt2`` packages need neither; ``export.py`` and
``translation.py`` need onnx and onnxscript (``pip install -e ".[deploy]"``).
"""
