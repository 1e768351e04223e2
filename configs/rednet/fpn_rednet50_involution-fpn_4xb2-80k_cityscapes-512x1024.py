# Semantic FPN RedNet-50 whose FPN output convs are 7x7 involutions (the
# original's fpn_red50_neck_512x1024_80k_cityscapes.py); laterals stay 1x1 convs.
_base_ = './fpn_rednet50_4xb2-80k_cityscapes-512x1024.py'

model = dict(neck=dict(type='mmrednet.InvolutionFPN'))
