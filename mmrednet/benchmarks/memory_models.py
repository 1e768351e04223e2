"""The models of the memory benchmark: RedNet-50 variants, ResNet-50, and detectors with either.

``variant`` is 'after' (RedNet-50 as shipped: kernel regeneration and stem
recomputation on), 'before' (both off), 'stem-kept' (regeneration only),
'cl-outputs' ('after' returning channels-last maps) or 'ResNet-50' (mmdet's).
Each builder returns the model in training mode and a function computing its
loss on a fixed input. mmdet (the ``det`` extra) is imported where it is used.
"""
from typing import Tuple

import torch
from mmengine.logging import MMLogger

from mmrednet.registry import MODELS

DET_CONFIGS = dict(retinanet='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                   faster_rcnn='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')


def _quiet_init(model: torch.nn.Module) -> None:
    """``init_weights`` without mmengine's per-parameter log lines."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def _rednet_cfg(variant: str, **kwargs) -> dict:
    return dict(type='mmrednet.RedNet', depth=50,
                recompute_stem=variant in ('after', 'cl-outputs'),
                involution_cfg=dict(regenerate_kernel=variant != 'before'),
                channels_last_outputs=variant == 'cl-outputs', **kwargs)


def backbone(variant: str, device: str, batch: int, size: Tuple[int, int]):
    """Backbone, its input and its loss; every parameter trains (no frozen stage)."""
    from mmdet.models.backbones import ResNet

    model = ResNet(depth=50) if variant == 'ResNet-50' else MODELS.build(
        _rednet_cfg(variant))
    _quiet_init(model)
    model.to(device).train()
    x = torch.randn(batch, 3, *size, device=device)

    def loss() -> torch.Tensor:
        return sum(out.float().mean() for out in model(x))

    return model, loss


def detector(section: str, variant: str, device: str, batch: int, size: Tuple[int, int]):
    """mmdet detector with its config's training settings, a fake batch and its loss."""
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.hub import get_config

    register_all_modules()
    cfg = get_config(DET_CONFIGS[section])
    backbone = cfg.model.backbone
    backbone.init_cfg = None  # no checkpoint download: weights don't change memory or time
    if variant != 'ResNet-50':
        # The detection RedNet (7x7 stem involution) with the config's frozen
        # stages and norm settings, exactly as the ResNet-50 it replaces.
        cfg.model.backbone = _rednet_cfg(
            variant, stem_kernel=7, out_indices=backbone.out_indices,
            frozen_stages=backbone.frozen_stages, norm_cfg=backbone.norm_cfg,
            norm_eval=backbone.norm_eval, style=backbone.style)
    model = DET_MODELS.build(cfg.model)
    _quiet_init(model)
    model.to(device).train()
    torch.manual_seed(0)
    inputs = demo_mm_inputs(batch_size=batch, image_shapes=[(3, *size)] * batch,
                            num_items=[8] * batch, num_classes=80, device=device)
    data = model.data_preprocessor(inputs, True)

    def loss() -> torch.Tensor:
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        return model.parse_losses(losses)[0]

    return model, loss
