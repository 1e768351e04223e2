"""The AOTInductor backend: ``export.py`` (the exporter: ``export_aoti``),
``package.py`` (what a ``.pt2`` records, and whether it runs here),
``backend.py`` (its graphs in this process) and ``runner.py`` (the C++ runner,
without Python). None of them needs onnx, onnxscript or onnxruntime.
"""
