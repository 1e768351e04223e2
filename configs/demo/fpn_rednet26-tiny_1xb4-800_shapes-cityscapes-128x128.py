# CPU demo: Semantic FPN with a narrow RedNet-26 trained from scratch on the
# synthetic street scenes of tools/dataset_converters/make_shapes_cityscapes.py
# (Cityscapes layout, 7 of the 19 classes). Plain BN, small crops, AdamW: it
# learns in a few minutes on 2 CPU cores. Run it all with tools/run_seg_demo.sh.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', './_base_rednet26_tiny.py'
]

norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (128, 128)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=_base_.rednet26_tiny,
    # Narrow neck and head: on CPU their full-resolution 3x3 convs cost more
    # than the whole backbone at 256/128 channels.
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=32),
    decode_head=dict(in_channels=[32, 32, 32, 32], channels=32, dropout_ratio=0.0,
                     norm_cfg=norm_cfg))

data_root = 'data/shapes_cityscapes/'
# The images are 256x128, an eighth of Cityscapes' 2048x1024 in each side; the
# pipelines are the base's Cityscapes ones scaled to that size. The base's
# multi-scale + flip tta_pipeline (tools/test.py --tta) and mIoU evaluator apply.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(256, 128), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(256, 128), keep_ratio=True),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=4, dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(num_workers=1, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 800
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, betas=(0.9, 0.999), weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=30),
    dict(type='PolyLR', eta_min=1e-5, power=0.9, begin=30, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=200)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=200, max_keep_ckpts=1),
    # Draw every validation/test prediction beside its ground truth
    # (<work_dir>/<timestamp>/vis_data/vis_image/).
    visualization=dict(type='SegVisualizationHook', draw=True, interval=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
