# RedNet-50 in place of the ResNet-50 of an mmdet / mmseg base model, shared by
# the COCO and Cityscapes configs, which inherit this file and write
#   model = dict(backbone=_base_.rednet50_coco)    (detection)
#   model = dict(backbone=dict(**_base_.rednet50, norm_cfg=..., norm_eval=False))
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

# ImageNet RedNet-50 weights: convert the official ones with
#   python tools/convert_official_checkpoint.py rednet50.pth checkpoints/rednet50_imagenet.pth
# or train from scratch with --cfg-options model.backbone.init_cfg=None.
pretrained_backbone = 'checkpoints/rednet50_imagenet.pth'
rednet50 = dict(
    _delete_=True,  # no option of the base's ResNet carries over
    type='mmrednet.RedNet',
    depth=50,
    stem_kernel=7,  # the detection/segmentation RedNets use a 7x7 stem involution
    out_indices=(0, 1, 2, 3),
    style='pytorch',
    init_cfg=dict(type='Pretrained', checkpoint=pretrained_backbone))
# The COCO detectors' settings, those of mmdet's ResNet-50: frozen stem and
# first stage, BN layers in eval mode with trainable affine parameters.
rednet50_coco = dict(
    rednet50,
    frozen_stages=1,
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True)
