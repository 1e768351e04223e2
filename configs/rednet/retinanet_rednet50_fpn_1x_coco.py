# RetinaNet with a RedNet-50 backbone and mmdet's FPN on COCO, 1x schedule
# (the original's det/configs/involution/retinanet_red50_fpn_1x_coco.py):
# SGD lr 0.01 for 8 GPUs x 2 images, linear warm-up over 2000 iterations.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', 'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/backbones/rednet50.py'
]
model = dict(backbone=_base_.rednet50_coco)

optim_wrapper = dict(optimizer=dict(lr=0.01))
# The original's schedule_1x_warmup.py: 2000 warm-up iterations instead of 500.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
