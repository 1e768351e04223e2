# Semantic FPN with a RedNet-50 backbone on Cityscapes (the original's
# seg/configs/involution/fpn_red50_512x1024_80k_cityscapes.py): 4 GPUs x 2
# images, 512x1024 crops, 80k iterations, SGD lr 0.01 with poly decay, SyncBN.
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', 'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_80k.py'
]
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

norm_cfg = dict(type='SyncBN', requires_grad=True)
# ImageNet RedNet-50 weights (official ones converted with
# tools/convert_official_checkpoint.py); train from scratch with
# --cfg-options model.backbone.init_cfg=None.
pretrained_backbone = 'checkpoints/rednet50_imagenet.pth'
crop_size = (512, 1024)
data_preprocessor = dict(size=crop_size)
model = dict(
    data_preprocessor=data_preprocessor,
    # EncoderDecoder copies a segmentor-level `pretrained` into the backbone;
    # the base's ResNetV1c weights must not reach RedNet.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmrednet.RedNet',
        depth=50,
        stem_kernel=7,  # the detection/segmentation RedNets use a 7x7 stem involution
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        strides=(1, 2, 2, 2),
        dilations=(1, 1, 1, 1),
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone)))
