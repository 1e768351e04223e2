# CPU demo: RetinaNet with a slim RedNet-26 and an involution FPN, trained from
# scratch on the shapes dataset (tools/run_demo.sh). A few minutes on 2 cores.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', './_base_shapes_instance.py',
    'mmdet::_base_/default_runtime.py', './_base_rednet26_tiny.py'
]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(**_base_.rednet26_tiny, out_indices=(1, 2, 3)),
    neck=dict(type='mmrednet.InvolutionFPN', in_channels=[128, 256, 512], out_channels=64,
              start_level=0, add_extra_convs='on_input', num_outs=5),
    # GIoU on decoded boxes: the metric is AP at IoU 0.5:0.95, so tight boxes pay.
    bbox_head=dict(num_classes=3, in_channels=64, feat_channels=64, stacked_convs=2,
                   reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=2.0)),
    test_cfg=dict(score_thr=0.05, max_per_img=20))

# From scratch on 2 CPU cores: AdamW and small batches (more updates per
# second) learn this data much faster than the COCO recipe's SGD.
max_epochs = 20
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=3e-3, weight_decay=0.05),
    clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=max_epochs, eta_min=1e-5)
]
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]))
