"""The deployed backends by name: what each reads, which tool writes it, how it loads.

``tools/test.py --backend NAME --OPTION FILE`` runs a deployment; the runtime
models (``runtime/``) load their graphs through ``load_graphs``. Neither
backend's module imports onnx, onnxscript or onnxruntime when imported (the
onnxruntime backend imports them when it runs), so a ``.pt2`` loads without them.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from .aoti import backend as aoti_backend
from .metadata import GraphMetadata
from .onnx import backend as ort_backend


@dataclass(frozen=True)
class Backend:
    """A deployed backend.

    Args:
        name (str): ``tools/test.py --backend NAME``.
        option (str): the ``tools/test.py`` option that gives its file (``--OPTION``).
        suffix (str): its file's extension.
        exporter (str): the script that writes it, under ``tools/deployment/``.
        load (callable): path -> graph name -> graph (called with an input tensor).
        read_main (callable): path -> the ``main`` graph's ``GraphMetadata`` and input
            shape (``None`` on dynamic axes), read without loading the graphs.
    """
    name: str
    option: str
    suffix: str
    exporter: str
    load: Callable[[str], Dict[str, Callable]]
    read_main: Callable[[str], Tuple[GraphMetadata, List[Optional[int]]]]

    @property
    def example(self) -> str:
        """The file name the docs and messages use, e.g. ``model.onnx``."""
        return f'model{self.suffix}'


BACKENDS = {backend.name: backend for backend in (
    Backend('onnxruntime', 'onnx', '.onnx', 'export_onnx.py', ort_backend.load_deployment,
            ort_backend.read_main),
    Backend('aoti', 'package', '.pt2', 'export_aoti.py', aoti_backend.load_package,
            aoti_backend.read_main),
)}


def get_backend(name: str) -> Backend:
    """The backend called ``name``; a ``ValueError`` naming the choices otherwise."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f'backend must be one of {", ".join(map(repr, BACKENDS))}, '
                         f'got {name!r}')
    return BACKENDS[name]


def load_graphs(path: str, backend: str) -> Dict[str, Callable]:
    """The graphs of the deployment at ``path`` in ``backend``: graph name -> graph."""
    return get_backend(backend).load(path)
