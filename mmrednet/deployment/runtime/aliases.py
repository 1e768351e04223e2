"""The runtime models' older registered names, so that configs saved with them still build.

Before the runtime models served both backends, each had one class per
backend: ``ONNXRuntime<Model>(onnx_file=...)`` and ``AOTI<Model>(package=...)``.
The Runner saves the model's config with its work directory, so those names
and arguments stay buildable: each builds the backend-neutral model.
"""
from typing import Callable

from mmrednet.registry import MODELS

# The file argument of the older names, by backend.
_FILE_ARGUMENT = dict(onnxruntime='onnx_file', aoti='package')


def _alias(model: type, backend: str, name: str) -> Callable:
    argument = _FILE_ARGUMENT[backend]

    def build(**kwargs):
        if argument not in kwargs:
            raise TypeError(f'{name} needs {argument}= (the exported file)')
        return model(deployment=kwargs.pop(argument), backend=backend, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f'``{model.__name__}(deployment={argument}, backend={backend!r})``: '
                     f'the older name, kept for saved configs.')
    return build


def register_aliases(model: type, **names: str) -> None:
    """Register ``model`` under its older names: ``backend=name``, e.g.
    ``onnxruntime='ONNXRuntimeImageClassifier', aoti='AOTIImageClassifier'``."""
    for backend, name in names.items():
        MODELS.register_module(name=name, module=_alias(model, backend, name))
