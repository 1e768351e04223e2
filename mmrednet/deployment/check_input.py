"""The input the exporter checks a graph on, and the default export shape.

A real image when the config's test set is there (its first image through the
test pipeline and the model's data preprocessor), else a deterministic random
image of the export shape through the same preprocessor.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DATASETS
from torch import Tensor, nn


def round_up(shape: Tuple[int, int], divisor: int) -> Tuple[int, int]:
    return tuple(math.ceil(s / divisor) * divisor for s in shape)


def _test_pipeline(cfg: Config) -> list:
    """The test dataset's pipeline (else, for wrapped datasets, the config's ``test_pipeline``)."""
    pipeline = cfg.test_dataloader.dataset.get('pipeline')
    return pipeline if pipeline is not None else cfg.get('test_pipeline', [])


def pipeline_shape(cfg: Config) -> Optional[Tuple[int, int]]:
    """``(H, W)`` that the test pipeline makes: its last fixed crop or resize, if any.

    mmcv's ``scale`` and ``crop_size`` are ``(w, h)``; a keep-ratio resize to
    ``(1333, 800)`` gives landscape images of height 800 and width up to 1333.
    """
    shape = None
    for step in _test_pipeline(cfg):
        size = step.get('crop_size') if step.get('type') == 'CenterCrop' else (
            step.get('scale') if step.get('type') == 'Resize' else None)
        if isinstance(size, int):
            shape = (size, size)
        elif isinstance(size, (tuple, list)) and len(size) == 2:
            shape = (int(size[1]), int(size[0]))
    return shape


def first_test_image(cfg: Config, model: nn.Module) -> Tuple[Optional[Tensor], str]:
    """``(input, description)`` of the first test image, or ``(None, why not)``."""
    try:
        dataset = DATASETS.build(cfg.test_dataloader.dataset)
        if len(dataset) == 0:
            return None, 'the test set is empty'
        data = pseudo_collate([dataset[0]])
    except (OSError, RuntimeError, ValueError) as error:  # files not there
        return None, f'the test set is not available ({type(error).__name__}: {error})'
    inputs = model.data_preprocessor(data, False)['inputs']
    sample = data['data_samples'][0]
    path = sample.metainfo.get('img_path', 'test image 0') if sample is not None else 'image 0'
    return inputs, f'{path} from the test set'


def random_input(model: nn.Module, shape: Tuple[int, int]) -> Tensor:
    """A deterministic random ``uint8`` image of ``shape`` through the data preprocessor."""
    generator = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, *shape), generator=generator, dtype=torch.uint8)
    return model.data_preprocessor(dict(inputs=[image]), False)['inputs']


def fit(input: Tensor, shape: Tuple[int, int]) -> Tensor:
    """``input`` resized to ``shape`` (bilinear) if it has another size."""
    if tuple(input.shape[2:]) == tuple(shape):
        return input
    return F.interpolate(input, size=shape, mode='bilinear', align_corners=False)
