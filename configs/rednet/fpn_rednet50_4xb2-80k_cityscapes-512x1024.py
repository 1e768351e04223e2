# Semantic FPN with a RedNet-50 backbone on Cityscapes (the original's
# seg/configs/involution/fpn_red50_512x1024_80k_cityscapes.py): 4 GPUs x 2
# images, 512x1024 crops, 80k iterations, SGD lr 0.01 with poly decay, SyncBN.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py',
    '../_base_/backbones/rednet50.py'
]

norm_cfg = dict(type='SyncBN', requires_grad=True)
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # EncoderDecoder copies a segmentor-level `pretrained` into the backbone;
    # the base's ResNetV1c weights must not reach RedNet.
    pretrained=None,
    backbone=dict(**_base_.rednet50, norm_cfg=norm_cfg, norm_eval=False))
