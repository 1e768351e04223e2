# CPU demo: Mask R-CNN with a slim RedNet-26, an involution FPN, an involution
# RPN head and an involution mask head, trained from scratch on the shapes
# dataset (tools/run_demo.sh).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', './_base_shapes_instance.py',
    'mmdet::_base_/default_runtime.py', './_base_rednet26_tiny.py',
    './_base_schedule_adamw_20e.py'
]

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=_base_.rednet26_tiny,
    neck=dict(type='mmrednet.InvolutionFPN', in_channels=[64, 128, 256, 512], out_channels=64,
              num_outs=5),
    rpn_head=dict(type='mmrednet.InvolutionRPNHead', in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3,
                       reg_decoded_bbox=True, loss_bbox=dict(type='GIoULoss', loss_weight=10.0)),
        mask_roi_extractor=dict(out_channels=64),
        mask_head=dict(type='mmrednet.InvolutionFCNMaskHead', num_convs=2, in_channels=64,
                       conv_out_channels=64, num_classes=3)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=500, max_per_img=200),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100), rcnn=dict(max_per_img=20)))

optim_wrapper = dict(optimizer=dict(lr=2e-3))
default_hooks = dict(logger=dict(interval=25),
                     checkpoint=dict(interval=_base_.max_epochs, max_keep_ckpts=1))
train_dataloader = dict(batch_size=4)
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
