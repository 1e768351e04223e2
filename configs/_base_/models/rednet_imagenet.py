# The RedNet ImageNet classifier of the original (cls/configs/_base_/models/rednet*.py,
# mmcls 0.x) as an mmpretrain ImageClassifier: RedNet with the 3x3 stem involution,
# global average pooling, linear 2048 -> 1000, label smoothing 0.1. The configs of
# the five depths inherit this file and set model.backbone.depth. They train from
# scratch; to evaluate PaddleClas's ImageNet weights instead (downloaded on first use):
#   python tools/test.py CONFIG 'paddleclas://RedNet50?with_head=1'
custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmrednet.RedNet',
        depth=50,
        stem_kernel=3,  # the ImageNet RedNets (and their weights) use a 3x3 stem involution
        out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original',
                  loss_weight=1.0),
        topk=(1, 5)))
