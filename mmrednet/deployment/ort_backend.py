"""The onnxruntime backend: exported graphs in CPU sessions, called with torch tensors."""
import os.path as osp
import warnings
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch import Tensor

from .metadata import GraphMetadata


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


class OnnxRuntimeGraph:
    """One exported graph (one input) in an onnxruntime session.

    The graphs take float32 (the exporter's input). A float16 or bfloat16
    input is cast up (exact); a float64 one is cast down with a warning (the
    values are rounded to float32); any other dtype (an integer image that
    skipped the data preprocessor, say) is refused.

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
        self.metadata = GraphMetadata.read(self.session.get_modelmeta().custom_metadata_map,
                                           self.name)
        self.input = self.session.get_inputs()[0]

    def _check(self, input: Tensor) -> None:
        if not input.is_floating_point():
            raise ValueError(f'{self.name} takes {self.input.name} as float32 (the data '
                             f'preprocessor\'s output), got {input.dtype}')
        if input.dtype == torch.float64:
            warnings.warn(f'{self.name}: the float64 {self.input.name} is rounded to float32, '
                          'the dtype the graph computes in', stacklevel=3)
        expected = self.input.shape  # ints where static, names where dynamic
        if input.dim() != len(expected) or any(
                isinstance(d, int) and d != s for d, s in zip(expected, input.shape, strict=True)):
            static = all(isinstance(d, int) for d in expected)
            raise ValueError(
                f'{self.name} takes {self.input.name} of shape {tuple(expected)}, got '
                f'{tuple(input.shape)}'
                + ('; export with --dynamic for other batch and image sizes' if static else ''))
        divisor = self.metadata.size_divisor
        if self.metadata.graph == 'main' and any(s % divisor for s in input.shape[2:]):
            raise ValueError(f'{self.name}: input height and width must be multiples of '
                             f'{divisor}, got {tuple(input.shape[2:])}; pad the images '
                             f'(e.g. the data preprocessor\'s pad_size_divisor={divisor})')

    def __call__(self, input: Tensor) -> List[List[Tensor]]:
        """Run on ``input`` (as float32: see the class); the outputs as groups
        (``metadata.groups``), float32 on input's device."""
        self._check(input)
        array = np.ascontiguousarray(input.detach().to('cpu', torch.float32).numpy())
        outputs = iter(self.session.run(None, {self.input.name: array}))
        return [[torch.from_numpy(next(outputs)).to(input.device) for _ in range(count)]
                for _, count in self.metadata.groups]


def load_deployment(path: str, num_threads: Optional[int] = None) -> Dict[str, OnnxRuntimeGraph]:
    """``model.onnx`` and the companions it names: graph name -> session."""
    main = OnnxRuntimeGraph(path, num_threads=num_threads)
    graphs = dict(main=main)
    for graph, file_name in main.metadata.companions.items():
        companion = osp.join(osp.dirname(path), file_name)
        if not osp.isfile(companion):
            raise FileNotFoundError(f'{path} needs its {graph} graph {companion}, which is '
                                    'missing (export writes them together)')
        graphs[graph] = OnnxRuntimeGraph(companion, num_threads=num_threads)
    return graphs
