# CPU demo: the ImageNet classifier with a slim RedNet-26 (stage widths 64..512),
# trained from scratch on 64x64 shapes in ImageNet's folder-per-class layout
# (tools/dataset_converters/make_shapes_imagenet.py: circle / square / triangle,
# 400 train and 50 val images per class). A few minutes on 2 cores (tools/run_demo.sh).
_base_ = ['../_base_/models/rednet_imagenet.py', 'mmpretrain::_base_/default_runtime.py']

model = dict(
    # The demos' slim RedNet-26 (./_base_rednet26_tiny.py) with ImageNet's 3x3 stem involution.
    backbone=dict(depth=26, stem_channels=32, base_channels=16),
    head=dict(num_classes=3, in_channels=512, topk=(1, )))

data_root = 'data/shapes_imagenet'
classes = ('circle', 'square', 'triangle')  # the sorted class folders n90000001..3
data_preprocessor = dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                         std=[58.395, 57.12, 57.375], to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    # ImageNet's augmentation, milder: a crop keeps at least half of the shape's image.
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.5, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

# Two CPU cores: decoding 64 px JPEGs in the main process is cheaper than workers.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='train', ann_file='',
                 metainfo=dict(classes=classes), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root=data_root, data_prefix='val', ann_file='',
                 metainfo=dict(classes=classes), pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# From scratch on 2 CPU cores AdamW learns faster than ImageNet's SGD recipe (as in
# the detection demos); seeded, so that a run reproduces the README's figures.
max_epochs = 20
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=6e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5)
]
randomness = dict(seed=0)
default_hooks = dict(
    logger=dict(interval=38),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1),
    visualization=dict(resize=192))  # tools/test.py --show-dir: legible labels on 64 px images
