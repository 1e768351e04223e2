"""RetinaNet-FPN with RedNet-50 against ResNet-50: an AMP training step and its peak memory.

mmdet (the ``det`` extra) is imported where it is used.
"""
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.structures import InstanceData

import mmrednet.models  # noqa: F401  (registers RedNet)
from mmrednet.utils import time_call

from .cuda_op import CUDA_TARGETS


@dataclass
class RetinaRow:
    backbone: str
    step_ms: float
    peak_mb: float
    time_ratio: float  # against ResNet-50
    memory_ratio: float
    target_time_ratio: float


def _retinanets(config: Path) -> Dict[str, torch.nn.Module]:
    """RetinaNet-FPN with the RedNet-50 config's backbone and with mmdet's ResNet-50."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules()
    rednet = Config.fromfile(str(config)).model
    rednet.backbone.init_cfg = None
    resnet = copy.deepcopy(rednet)
    resnet.backbone = dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                           frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                           norm_eval=True, style='pytorch')
    return {'RedNet-50': MODELS.build(rednet), 'ResNet-50': MODELS.build(resnet)}


def _detection_batch(batch: int, height: int, width: int) -> dict:
    """What a COCO dataloader yields: uint8 images and samples with random boxes."""
    from mmdet.structures import DetDataSample
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                    generator=generator))
        corner = torch.rand(10, 2, generator=generator) * torch.tensor([width, height]) * 0.8
        boxes = torch.cat([corner, corner + 32 + 256 * torch.rand(10, 2, generator=generator)], 1)
        boxes[:, 0::2].clamp_(max=width)
        boxes[:, 1::2].clamp_(max=height)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, 80, (10, ), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def benchmark_retinanet(config: Path, batch: int, height: int, width: int, repeat: int,
                        device: str = 'cuda') -> List[RetinaRow]:
    """One AMP training step (forward, loss, backward, SGD) and its peak memory.

    Args:
        config: ``configs/rednet/retinanet_rednet50_fpn_1x_coco.py``; its model, and the
            same with mmdet's ResNet-50 as backbone, are measured.
    """
    data = _detection_batch(batch, height, width)
    measured = {}
    for name, model in _retinanets(config).items():
        model = model.to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        wrapper = (AmpOptimWrapper(optimizer=optimizer) if device == 'cuda' else
                   OptimWrapper(optimizer=optimizer))

        def step(model=model, wrapper=wrapper):
            model.train_step(data, wrapper)

        seconds = time_call(step, device, repeat=repeat, warmup=2)
        peak = math.nan
        if device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        measured[name] = (seconds * 1e3, peak)
        model.cpu()
        del model, optimizer, wrapper
        if device == 'cuda':
            torch.cuda.empty_cache()
    base_ms, base_mb = measured['ResNet-50']
    return [RetinaRow(name, ms, mb, ms / base_ms, mb / base_mb, CUDA_TARGETS['retina_time_ratio'])
            for name, (ms, mb) in measured.items()]
