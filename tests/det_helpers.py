"""Shared pieces of the detection tests: a tiny COCO dataset and tiny runner configs."""
import os.path as osp
from typing import Optional

from mmengine.config import Config

from mmrednet.demo import SHAPE_CLASSES, make_shapes_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
COCO_CONFIGS = [
    'retinanet_rednet50_fpn_1x_coco.py',
    'retinanet_rednet50_involution-fpn_1x_coco.py',
    'faster-rcnn_rednet50_fpn_1x_coco.py',
    'faster-rcnn_rednet50_involution-fpn_1x_coco.py',
    'faster-rcnn_rednet50_involution-fpn_involution-head_1x_coco.py',
    'mask-rcnn_rednet50_fpn_1x_coco.py',
    'mask-rcnn_rednet50_involution-fpn_1x_coco.py',
    'mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.py',
]
DEMO_RETINANET = osp.join(ROOT, 'configs', 'demo',
                          'retinanet_rednet26-tiny_involution-fpn_shapes.py')


def tiny_dataset(tmp_path_factory) -> str:
    """A 2+2-image shapes dataset in COCO format, made once per test process."""
    root = tmp_path_factory.getbasetemp() / 'shapes_coco_tiny'
    if not (root / 'annotations' / 'instances_val.json').exists():
        make_shapes_coco(str(root), (('train', 2), ('val', 2)), image_size=96, max_objects=2)
    return str(root)


def _point_at_dataset(loader: dict, data_root: str, split: str, scale) -> None:
    dataset = loader['dataset']
    dataset.update(data_root=data_root + '/', ann_file=f'annotations/instances_{split}.json',
                   data_prefix=dict(img=f'{split}/'), metainfo=dict(classes=SHAPE_CLASSES))
    for step in dataset['pipeline']:
        if step['type'] == 'Resize':
            step['scale'] = scale
        if step['type'] == 'RandomFlip':
            step['prob'] = 0.0  # keep runs comparable (resume test)
    loader.update(batch_size=1, num_workers=0, persistent_workers=False)


def tiny_cfg(config: str, data_root: str, work_dir: str, max_iters: Optional[int] = None,
             scale=(96, 96)) -> Config:
    """``config`` shrunk to CPU-test size: tiny data, batch 1, no pretrained weights.

    With ``max_iters`` the epoch loop becomes an iteration loop that checkpoints
    every iteration; otherwise one epoch (one iteration: one training image
    is used) without checkpoints.
    """
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.model.backbone.init_cfg = None
    cfg.train_dataloader.dataset.ann_file = 'annotations/instances_train.json'
    _point_at_dataset(cfg.train_dataloader, data_root, 'train', scale)
    cfg.train_dataloader.dataset.indices = 1  # one image: one iteration per epoch
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=False)
    cfg.train_dataloader.pop('batch_sampler', None)
    for name in ('val_dataloader', 'test_dataloader'):
        _point_at_dataset(cfg[name], data_root, 'val', scale)
        cfg[name].dataset.indices = 1
    for name in ('val_evaluator', 'test_evaluator'):
        cfg[name].ann_file = osp.join(data_root, 'annotations', 'instances_val.json')
    # COCO's 80 classes -> the 3 shapes (only the last predictor layers change).
    heads = [cfg.model.get('bbox_head')] + [cfg.model.get('roi_head', {}).get(name)
                                            for name in ('bbox_head', 'mask_head')]
    for head in filter(None, heads):
        head.num_classes = len(SHAPE_CLASSES)
    # An untrained model scores below the usual 0.05: keep its boxes, so
    # that prediction, evaluation and drawing have something to work on.
    test_cfg = cfg.model.test_cfg
    (test_cfg.rcnn if 'rcnn' in test_cfg else test_cfg).score_thr = 0.0
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    if max_iters is None:
        cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=10)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                            save_last=False)
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=100)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
        cfg.train_dataloader.dataset.indices = 2
    return cfg
