"""What an exported graph says about itself (both backends), and the checks on reading it.

Every graph of a deployment (``graphs.py``) carries a ``GraphMetadata``: in an
``.onnx`` file's ``metadata_props`` (``onnx/``), in a ``.pt2``'s
``extra/mmrednet.json`` (``aoti/package.py``). It says how the flat outputs
regroup into what the framework's post-processing takes, e.g.
``(cls_scores[5], bbox_preds[5])``, and what the model was (its type and its
``num_classes`` settings), so that a deployment given with the wrong config is
refused instead of giving wrong predictions.

Both files can come from anyone: ``from_dict`` takes nothing it does not expect
(keys, types, sizes), so a malformed file gives one ``ValueError``.
"""
import json
import os.path as osp
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Mapping, Tuple

MAX_TEXT = 256  # characters of any name or version the metadata holds
MAX_ITEMS = 64  # entries of any list or dict it holds
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*')  # a graph name


def check(condition: bool, where: str, what: str) -> None:
    """Raise ``ValueError(f'{where}: {what}')`` unless ``condition``."""
    if not condition:
        raise ValueError(f'{where}: {what}')


def check_text(value: Any, where: str) -> str:
    check(isinstance(value, str) and len(value) <= MAX_TEXT, where,
          f'expected a string of at most {MAX_TEXT} characters, got {_shown(value)}')
    return value


def check_int(value: Any, where: str, low: int = 0, high: int = 1 << 31) -> int:
    check(isinstance(value, int) and not isinstance(value, bool) and low <= value <= high,
          where, f'expected an int in [{low}, {high}], got {_shown(value)}')
    return value


def check_items(value: Any, kind: type, where: str) -> Any:
    """``value`` as a ``kind`` (list or dict) of at most ``MAX_ITEMS`` entries."""
    check(isinstance(value, kind) and len(value) <= MAX_ITEMS, where,
          f'expected a {kind.__name__} of at most {MAX_ITEMS} entries, got {_shown(value)}')
    if kind is dict:
        for key in value:
            check_text(key, f'{where} key')
    return value


def check_graph_name(value: Any, where: str) -> str:
    check(isinstance(value, str) and len(value) <= MAX_TEXT and _NAME.fullmatch(value),
          where, f'expected a graph name (letters, digits, _), got {_shown(value)}')
    return value


def check_keys(data: Any, required: List[str], optional: List[str], where: str) -> None:
    check_items(data, dict, where)
    missing = [key for key in required if key not in data]
    unknown = [key for key in data if key not in required and key not in optional]
    check(not missing and not unknown, where,
          f'missing {missing}, unknown {unknown}' if missing and unknown else
          (f'missing {missing}' if missing else f'unknown keys {unknown}'))


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f'{text[:57]}...'


def num_classes_of(model_cfg: Mapping, prefix: str = '') -> Dict[str, int]:
    """Every ``num_classes`` in a model config, by its path: ``{'head.num_classes': 5}``.

    The settings that decide the shape and meaning of a model's outputs; the
    graphs record them and a config with other values is refused.
    """
    found = {}
    for key, value in model_cfg.items():
        path = f'{prefix}{key}'
        if key == 'num_classes' and isinstance(value, int):
            found[path] = value
        elif isinstance(value, Mapping):
            found.update(num_classes_of(value, f'{path}.'))
        elif isinstance(value, (list, tuple)):  # e.g. mmseg's auxiliary heads
            for index, item in enumerate(value):
                if isinstance(item, Mapping):
                    found.update(num_classes_of(item, f'{path}.{index}.'))
    return found


@dataclass
class GraphMetadata:
    """What one exported graph says about itself.

    Args:
        kind (str): the model kind (``graphs.py``).
        model_type (str): the config's ``model.type``, checked at load time.
        graph (str): ``main``, ``bbox_head`` or ``mask_head``.
        groups (list): ``(name, number of tensors)`` of each output group.
        size_divisor (int): what input height and width must be multiples of.
        companions (dict): graph name -> file name beside this one (``main`` of
            an ``.onnx`` deployment only): a plain file name in the same directory.
        num_classes (dict): the model config's ``num_classes`` settings by path
            (``num_classes_of``), checked at load time; empty in older files.
    """
    kind: str
    model_type: str
    graph: str
    groups: List[Tuple[str, int]]
    size_divisor: int = 1
    companions: Dict[str, str] = field(default_factory=dict)
    num_classes: Dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: Any, where: str) -> 'GraphMetadata':
        """From ``data`` (parsed JSON), every key and type checked.

        Raises:
            ValueError: ``data`` is not the metadata of a graph.
        """
        names = [f.name for f in fields(cls)]
        check_keys(data, names[:4], names[4:], where)
        groups = []
        for index, group in enumerate(check_items(data['groups'], list, f'{where} groups')):
            at = f'{where} groups[{index}]'
            check(isinstance(group, list) and len(group) == 2, at,
                  f'expected [name, count], got {_shown(group)}')
            groups.append((check_text(group[0], at), check_int(group[1], at, 1, MAX_ITEMS)))
        companions = check_items(data.get('companions', {}), dict, f'{where} companions')
        for graph, file_name in companions.items():
            check_graph_name(graph, f'{where} companions')
            check_file_name(file_name, f'{where} companions[{graph!r}]')
        num_classes = check_items(data.get('num_classes', {}), dict, f'{where} num_classes')
        for path, value in num_classes.items():
            check_int(value, f'{where} num_classes[{path!r}]')
        return cls(check_text(data['kind'], f'{where} kind'),
                   check_text(data['model_type'], f'{where} model_type'),
                   check_graph_name(data['graph'], f'{where} graph'), groups,
                   check_int(data.get('size_divisor', 1), f'{where} size_divisor', 1, 1 << 16),
                   dict(companions), dict(num_classes))

    @classmethod
    def from_json(cls, text: str, where: str) -> 'GraphMetadata':
        """From its JSON text (``to_json``); ``ValueError`` naming ``where`` if malformed."""
        return cls.from_dict(parse_json(text, where), where)


def parse_json(text, where: str) -> Any:
    """``json.loads`` with every failure (syntax, nesting too deep) as a ``ValueError``."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, bytes not UTF-8
        raise ValueError(f'{where}: not valid JSON ({type(error).__name__})') from None


def check_file_name(value: Any, where: str) -> str:
    """``value`` as a plain file name: no directory part, not ``.``/``..``, not hidden."""
    check_text(value, where)
    check(value not in ('', '.', '..') and osp.basename(value) == value
          and '/' not in value and '\\' not in value and not value.startswith('.')
          and '\0' not in value, where,
          f'expected a file name in the same directory, got {_shown(value)}')
    return value


def companion_path(main_path: str, graph: str) -> str:
    """``dir/model.onnx`` -> ``dir/model.<graph>.onnx``."""
    root, ext = osp.splitext(main_path)
    return f'{root}.{graph}{ext}'
