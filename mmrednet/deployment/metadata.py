"""What an exported file says about itself, in the ONNX model's ``metadata_props``.

A deployment is one ``.onnx`` file per graph (``graphs.py``): ``model.onnx``
holds the ``main`` graph and names its companions (``model.bbox_head.onnx``,
``model.mask_head.onnx`` for two-stage detectors), so ``model.onnx`` alone
identifies the deployment. The output groups say how the flat ONNX outputs
regroup into what the framework's post-processing takes, e.g.
``(cls_scores[5], bbox_preds[5])``.
"""
import json
import os.path as osp
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Tuple

import onnx

_KEY = 'mmrednet'


@dataclass
class GraphMetadata:
    """What one exported graph says about itself.

    Args:
        kind (str): the model kind (``graphs.py``).
        model_type (str): the config's ``model.type``, checked at load time.
        graph (str): ``main``, ``bbox_head`` or ``mask_head``.
        groups (list): ``(name, number of tensors)`` of each output group.
        size_divisor (int): what input height and width must be multiples of.
        companions (dict): graph name -> file name beside this one (``main`` only).
    """
    kind: str
    model_type: str
    graph: str
    groups: List[Tuple[str, int]]
    size_divisor: int = 1
    companions: Dict[str, str] = field(default_factory=dict)

    def write(self, model: onnx.ModelProto) -> None:
        onnx.helper.set_model_props(model, {_KEY: json.dumps(asdict(self))})

    @classmethod
    def read(cls, props: Dict[str, str], path: str) -> 'GraphMetadata':
        """From a session's ``custom_metadata_map``; ``path`` for the error message."""
        if _KEY not in props:
            raise ValueError(f'{path} was not written by mmrednet\'s exporter '
                             '(tools/deployment/export_onnx.py): it has no mmrednet metadata')
        meta = cls(**json.loads(props[_KEY]))
        meta.groups = [tuple(group) for group in meta.groups]
        return meta


def companion_path(main_path: str, graph: str) -> str:
    """``dir/model.onnx`` -> ``dir/model.<graph>.onnx``."""
    root, ext = osp.splitext(main_path)
    return f'{root}.{graph}{ext}'
