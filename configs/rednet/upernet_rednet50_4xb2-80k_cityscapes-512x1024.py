# UPerNet with a RedNet-50 backbone on Cityscapes (the original's
# upernet_red50_512x1024_80k_cityscapes.py): PPM + FPN decode head and an FCN
# auxiliary head on stage 3 (loss weight 0.4), 4 GPUs x 2 images, 80k iterations.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
# See fpn_rednet50_4xb2-80k_cityscapes-512x1024.py for the checkpoint.
pretrained_backbone = 'checkpoints/rednet50_imagenet.pth'
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrednet.RedNet',
        depth=50,
        stem_kernel=7,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone)))
