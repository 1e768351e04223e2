"""The onnxruntime backend: exported graphs in CPU sessions, called with torch tensors.

onnx and onnxruntime are imported where they are used, so that a process that
runs only ``.pt2`` packages needs neither (``pip install -e ".[deploy]"`` adds them).
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor

from ..graph_input import graph_input
from ..metadata import GraphMetadata

METADATA_KEY = 'mmrednet'  # the key of the graph's GraphMetadata in metadata_props


def session_options(num_threads: Optional[int] = None):
    """onnxruntime session options; ``num_threads`` intra-op threads (default: its own).

    The graphs run beside PyTorch (RoIAlign, NMS, mask pasting, the next
    batch's preprocessing): onnxruntime's threads must not spin-wait for work
    after a run, which takes the cores PyTorch is about to use.
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if num_threads:
        options.intra_op_num_threads = num_threads
    return options


def metadata_of(props: Dict[str, str], path: str) -> GraphMetadata:
    """The ``GraphMetadata`` in an ONNX model's metadata (``custom_metadata_map``, or
    ``metadata_props`` as a dict); ``path`` for the error message."""
    if METADATA_KEY not in props:
        raise ValueError(f'{path} was not written by mmrednet\'s exporter '
                         '(tools/deployment/export_onnx.py): it has no mmrednet metadata')
    return GraphMetadata.from_json(props[METADATA_KEY], f'{path}: mmrednet metadata')


def read_main(path: str) -> Tuple[GraphMetadata, List[Optional[int]]]:
    """The ``main`` graph's metadata and input shape (``None`` on dynamic axes) of the
    deployment ``path`` (``model.onnx``), without starting a session; a clear error
    when ``path`` is not one, or is another graph's file."""
    import onnx
    if not osp.isfile(path):
        raise FileNotFoundError(f'ONNX file not found: {path}')
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and others: not an ONNX model
        raise ValueError(f'{path} is not an ONNX model ({type(error).__name__})') from None
    meta = metadata_of({p.key: p.value for p in model.metadata_props}, path)
    if meta.graph != 'main':
        raise ValueError(f'{path} is the {meta.graph} graph of a deployment; give the main '
                         '.onnx file (the one without a graph name)')
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return meta, [d.dim_value if d.HasField('dim_value') else None for d in dims]


class OnnxRuntimeGraph:
    """One exported graph (one input) in an onnxruntime session.

    The graphs take float32 (the exporter's input), as ``graph_input`` makes it:
    float16 and bfloat16 are cast up, float64 is rounded with a warning, other
    dtypes are refused.

    Args:
        model (str | bytes): the ``.onnx`` file, or its serialized bytes.
        name (str, optional): how error messages call it (default: the path).
        num_threads (int, optional): onnxruntime intra-op threads.
    """

    def __init__(self, model: Union[str, bytes], name: Optional[str] = None,
                 num_threads: Optional[int] = None) -> None:
        import onnxruntime as ort
        if isinstance(model, str) and not osp.isfile(model):
            raise FileNotFoundError(f'ONNX file not found: {model}')
        self.name = name or (model if isinstance(model, str) else 'the exported model')
        self.session = ort.InferenceSession(model, session_options(num_threads),
                                            providers=['CPUExecutionProvider'])
        self.metadata = metadata_of(self.session.get_modelmeta().custom_metadata_map,
                                    self.name)
        self.input = self.session.get_inputs()[0]

    def __call__(self, input: Tensor) -> List[List[Tensor]]:
        """Run on ``input`` (as float32: see the class); the outputs as groups
        (``metadata.groups``), float32 on input's device."""
        array = graph_input(input, self.input.shape, self.metadata, self.name,
                            self.input.name).numpy()
        outputs = iter(self.session.run(None, {self.input.name: array}))
        return [[torch.from_numpy(next(outputs)).to(input.device) for _ in range(count)]
                for _, count in self.metadata.groups]


def load_deployment(path: str, num_threads: Optional[int] = None) -> Dict[str, OnnxRuntimeGraph]:
    """``model.onnx`` and the companions it names: graph name -> session.

    A companion is a plain file name beside ``model.onnx``: ``GraphMetadata``
    refuses any other when it reads the metadata.
    """
    main = OnnxRuntimeGraph(path, num_threads=num_threads)
    graphs = dict(main=main)
    for graph, file_name in main.metadata.companions.items():
        companion = osp.join(osp.dirname(path), file_name)
        if not osp.isfile(companion):
            raise FileNotFoundError(f'{path} needs its {graph} graph {companion}, which is '
                                    'missing (export writes them together)')
        graphs[graph] = OnnxRuntimeGraph(companion, num_threads=num_threads)
    return graphs
