# RedNet-50 in place of the ResNet-50 of an mmdet / mmseg base model, shared by
# the COCO and Cityscapes configs, which inherit this file and write
#   model = dict(backbone=_base_.rednet50_coco)    (detection)
#   model = dict(backbone=dict(**_base_.rednet50, norm_cfg=..., norm_eval=False))
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

# ImageNet RedNet-50 weights: PaddleClas's conversion of the official ones, downloaded
# on first use into torch's hub cache (MMREDNET_PADDLECLAS_URL: a mirror or a local
# directory) and converted on the fly, the 3x3 stem involution embedded in the 7x7 one.
# A converted local file works too (tools/convert_official_checkpoint.py ... --stem-kernel 7):
#   --cfg-options model.backbone.init_cfg.checkpoint=checkpoints/rednet50_imagenet.pth
# or train from scratch with --cfg-options model.backbone.init_cfg=None.
pretrained_backbone = 'paddleclas://RedNet50?stem_kernel=7'
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
