# Faster R-CNN, RedNet-50 backbone and an FPN whose 3x3 output convs are 7x7
# involutions (the original's faster_rcnn_red50_neck_fpn_1x_coco.py, which
# switches to the 2000-iteration warm-up of its schedule_1x_warmup.py).
_base_ = './faster-rcnn_rednet50_fpn_1x_coco.py'

model = dict(neck=dict(type='mmrednet.InvolutionFPN'))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=2000),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]
