"""Find entries anywhere in a config's nested dicts and lists."""
from typing import Any, Iterator, Tuple


def iter_dicts(node: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """Yield ``(dotted key, dict)`` for ``node`` and every dict inside it, parents first.

    Args:
        node: A config value (dicts and lists are searched).
        key (str): ``node``'s own dotted key, e.g. ``model``; list items get
            their index (``model.backbone.init_cfg.0``), as ``--cfg-options`` takes them.
    """
    if isinstance(node, dict):
        yield key, node
        for name, value in node.items():
            yield from iter_dicts(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_dicts(value, f'{key}.{i}')
