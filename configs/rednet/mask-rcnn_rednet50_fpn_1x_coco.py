# Mask R-CNN with a RedNet-50 backbone and mmdet's FPN on COCO, 1x schedule
# (the original's det/configs/involution/mask_rcnn_red50_fpn_1x_coco.py). It
# used mmdet's plain schedule_1x (500 warm-up iterations), kept here.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py', 'mmdet::_base_/default_runtime.py',
    '../_base_/backbones/rednet50.py'
]
model = dict(backbone=_base_.rednet50_coco)
