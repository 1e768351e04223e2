# CPU demo: RetinaNet with a slim RedNet-26 and an involution FPN, trained from
# scratch on the shapes dataset (tools/run_demo.sh). A few minutes on 2 cores.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', './_base_shapes_instance.py',
    'mmdet::_base_/default_runtime.py', './_base_rednet26_tiny.py',
    './_base_schedule_adamw_20e.py'
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

default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=_base_.max_epochs, max_keep_ckpts=1))
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(160, 160), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]))
