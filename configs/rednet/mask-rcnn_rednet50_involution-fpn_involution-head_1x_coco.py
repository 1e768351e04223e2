# Mask R-CNN with involution in the backbone, the FPN output convs, the RPN
# head's 3x3 conv and the 4 convs of the mask head (the original's
# mask_rcnn_red50_neck_fpn_head_1x_coco.py). That file meant to clip gradients
# at max_norm 5 like its Faster R-CNN twin but does not parse
# (`grad_clip(dict(...))`); the clipping it meant is applied here.
_base_ = './mask-rcnn_rednet50_involution-fpn_1x_coco.py'

model = dict(
    rpn_head=dict(type='mmrednet.InvolutionRPNHead'),
    roi_head=dict(mask_head=dict(type='mmrednet.InvolutionFCNMaskHead')))
optim_wrapper = dict(clip_grad=dict(max_norm=5, norm_type=2))
