"""The classification demo shrunk for resume tests: 12 images of 32 px, 3 iterations an epoch."""
import os.path as osp
from typing import Dict, Optional

import torch
from mmengine.config import Config

from mmrednet.demo import make_shapes_imagenet

from .det_helpers import ROOT

DEMO = osp.join(ROOT, 'configs', 'demo', 'rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py')
IMAGE_SIZE = 32


def tiny_shapes_imagenet(directory) -> str:
    """4 training and 2 validation images per class in ``directory``, made once."""
    root = directory / 'shapes_imagenet_tiny'
    if not (root / 'val').exists():
        make_shapes_imagenet(str(root), (('train', 4), ('val', 2)), image_size=IMAGE_SIZE,
                             radius=(5, 12))
    return str(root)


def demo_cfg(data_root: str, work_dir: str, epochs: int = 3, workers: int = 0,
             iters: Optional[int] = None) -> Config:
    """The demo config on the tiny data, augmentation on (random resized crop and flip, Mixup).

    Epoch-based (``epochs``, a checkpoint each epoch, all kept) or, with ``iters``,
    iteration-based on mmengine's InfiniteSampler (a checkpoint every 2 iterations).
    Validation after every epoch (every 3 iterations): a resumed run starts
    from a checkpoint written before a validation.
    """
    cfg = Config.fromfile(DEMO)
    cfg.work_dir = work_dir
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[name].dataset.data_root = data_root
    train = cfg.train_dataloader
    train.update(batch_size=4, num_workers=workers, persistent_workers=False)
    [crop] = [step for step in train.dataset.pipeline if step.type == 'RandomResizedCrop']
    crop.scale = IMAGE_SIZE
    cfg.val_dataloader.batch_size = 6
    # Mixup in the model's data preprocessor draws from NumPy and torch in the main process.
    cfg.data_preprocessor.batch_augments = dict(augments=[dict(type='Mixup', alpha=0.2)])
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_level = 'WARNING'
    if iters is None:
        cfg.train_cfg = dict(by_epoch=True, max_epochs=epochs, val_interval=1)
        cfg.param_scheduler = [
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=0, end=epochs, eta_min=1e-5)]
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=3)
        cfg.param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
                                    end=iters)]
        train.sampler = dict(type='InfiniteSampler', shuffle=True)
        cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False, interval=2)
    return cfg


def write_cfg(cfg: Config, path) -> str:
    cfg.dump(str(path))
    return str(path)


def trained_state(path) -> Dict[str, torch.Tensor]:
    """A checkpoint's weights and optimizer state, flat: what must come out bit for bit."""
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    state = {f'model.{k}': v for k, v in ckpt['state_dict'].items()}
    for idx, param_state in ckpt['optimizer']['state'].items():
        for name, value in param_state.items():
            state[f'optimizer.{idx}.{name}'] = value
    state['meta.iter'] = torch.tensor(ckpt['meta']['iter'])
    return state


def differing(expected: Dict[str, torch.Tensor], got: Dict[str, torch.Tensor]) -> list:
    """The keys whose tensors are not bit for bit equal (or missing on one side)."""
    assert expected.keys() == got.keys()
    return [key for key, value in expected.items() if not torch.equal(value, got[key])]
