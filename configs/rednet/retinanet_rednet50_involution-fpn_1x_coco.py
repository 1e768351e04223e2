# RetinaNet, RedNet-50 backbone and an FPN whose 3x3 output convs are 7x7
# involutions (the original's retinanet_red50_neck_fpn_1x_coco.py).
_base_ = './retinanet_rednet50_fpn_1x_coco.py'

model = dict(neck=dict(type='mmrednet.InvolutionFPN'))
# The original clips gradients for this model only.
optim_wrapper = dict(clip_grad=dict(max_norm=40, norm_type=2))
