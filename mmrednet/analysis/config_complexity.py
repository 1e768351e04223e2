"""Params and FLOPs of the model a config builds (what ``tools/analysis/get_flops.py`` prints)."""
from typing import Dict, Optional, Tuple

from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmrednet.utils import model_config

from .complexity import model_complexity

# (H, W) of the original tools
DEFAULT_SHAPE = {'mmdet': (1280, 800), 'mmseg': (1024, 2048), 'mmpretrain': (224, 224)}


def config_complexity(config: str, shape: Optional[Tuple[int, int]] = None,
                      cfg_options: Optional[dict] = None) -> Dict:
    """Build ``config``'s model (no pretrained weights) and measure it.

    Args:
        config (str): An mmdet/mmseg/mmpretrain config file.
        shape (tuple[int, int], optional): The input's ``(H, W)``; by default
            the original tools' size for the config's scope (``DEFAULT_SHAPE``).
        cfg_options (dict, optional): Overrides merged into the config.

    Returns:
        dict: :func:`~mmrednet.analysis.model_complexity`'s result, with
        ``shape`` the ``(H, W)`` measured.
    """
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None  # structure only: no file needed
    model = MODELS.build(model_config(cfg))
    if scope == 'mmseg':
        from mmengine.model import revert_sync_batchnorm
        model = revert_sync_batchnorm(model)  # SyncBN needs a process group
    height, width = shape or DEFAULT_SHAPE.get(scope, (1280, 800))
    result = model_complexity(model, height, width)
    result['shape'] = (height, width)
    return result
