# RedNet-38 on ImageNet-1k with the original recipe
# (github.com/d-li14/involution, docs/user_guides/imagenet.md): 64 GPUs x 32 images,
# SGD lr 0.8 + Nesterov, 130-epoch cosine with a 3130-iteration warm-up, label smoothing
# 0.1, RandomResizedCrop 224 + flip; test: short side 256, centre crop 224.
#   GPUS=64 bash tools/slurm_train.sh PARTITION JOB_NAME THIS_CONFIG WORK_DIR
# On fewer GPUs add --auto-scale-lr (lr 0.8 x total batch / 2048).
_base_ = [
    '../_base_/models/rednet_imagenet.py', 'mmpretrain::_base_/datasets/imagenet_bs32.py',
    '../_base_/schedules/imagenet_bs2048_warmup-coslr-130e.py',
    'mmpretrain::_base_/default_runtime.py'
]

model = dict(backbone=dict(depth=38))
