# UPerNet with a RedNet-50 backbone on Cityscapes (the original's
# upernet_red50_512x1024_80k_cityscapes.py): PPM + FPN decode head and an FCN
# auxiliary head on stage 3 (loss weight 0.4), 4 GPUs x 2 images, 80k iterations.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/backbones/rednet50.py'
]

norm_cfg = dict(type='SyncBN', requires_grad=True)
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(**_base_.rednet50, norm_cfg=norm_cfg, norm_eval=False))
