# The original's ImageNet schedule (cls/configs/rednet/rednet*_b32x64_warmup_coslr_imagenet.py,
# mmcls 0.x): a total batch of 2048 (64 GPUs x 32 images), SGD with Nesterov momentum,
# lr 0.8 annealed to 0 by a per-epoch cosine over 130 epochs and, during the first 3130
# iterations (5 epochs of 626), multiplied by a linear warm-up factor rising from 0.25
# (mmcv 1.x's warmup='linear', warmup_ratio=0.25). Both schedulers are multiplicative,
# so mmengine chains them into exactly that product.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.8, momentum=0.9, weight_decay=1e-4, nesterov=True))

param_scheduler = [
    # mmengine's LinearLR reaches its end factor at step end - 1; mmcv's warm-up
    # reached the full lr at iteration 3130: lr x (0.25 + 0.75 * i / 3130), i <= 3130.
    dict(type='LinearLR', start_factor=0.25, by_epoch=False, begin=0, end=3131),
    dict(type='CosineAnnealingLR', T_max=130, eta_min=0, by_epoch=True, begin=0, end=130),
]

train_cfg = dict(by_epoch=True, max_epochs=130, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# tools/train.py --auto-scale-lr scales lr 0.8 by (GPUs x batch per GPU) / 2048.
auto_scale_lr = dict(base_batch_size=2048)
