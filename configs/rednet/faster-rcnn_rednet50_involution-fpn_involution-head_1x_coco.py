# Faster R-CNN with involution in the backbone, the FPN output convs and the
# RPN head's 3x3 conv (the original's faster_rcnn_red50_neck_fpn_head_1x_coco.py).
_base_ = './faster-rcnn_rednet50_involution-fpn_1x_coco.py'

model = dict(rpn_head=dict(type='mmrednet.InvolutionRPNHead'))
optim_wrapper = dict(clip_grad=dict(max_norm=5, norm_type=2))
