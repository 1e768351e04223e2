"""Convert official RedNet weights into checkpoints that mmrednet loads strictly.

Sources (told apart by content, not by name): PaddleClas's ``.pdparams``
ImageNet RedNets (read without Paddle, numpy arrays only), and the original
code's PyTorch checkpoints: mmcls ImageNet classifiers, mmdet 2.x detectors and
mmseg 0.x segmentors (layout detected from the keys). ImageNet weights become a
bare backbone (no prefix) for a backbone ``init_cfg=dict(type='Pretrained')``,
or with ``--with-head`` the whole mmpretrain classifier (``backbone.*``,
``head.fc.*``) for the ImageNet configs. Detectors and segmentors are kept whole
(for ``load_from`` or tools/test.py). The result is checked by a strict load
into a RedNet (classifier) of the depth the keys show, or into ``--config``'s
model; every key that cannot be mapped is reported, and nothing is written
then. The input is only read; the output appears whole or not at all.

Examples:
    # PaddleClas RedNet-50 for the detection/segmentation configs (7x7 stem):
    python tools/convert_official_checkpoint.py RedNet50_pretrained.pdparams \\
        checkpoints/rednet50_imagenet.pth --stem-kernel 7
    # ... as the whole classifier, to evaluate on ImageNet with tools/test.py:
    python tools/convert_official_checkpoint.py RedNet50_pretrained.pdparams \\
        checkpoints/rednet50_in1k_paddleclas.pth --with-head
    # A trained detector of the original:
    python tools/convert_official_checkpoint.py mask_rcnn_red50_neck_fpn_head_1x_coco.pth \\
        checkpoints/mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.pth \\
        --config configs/rednet/mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.py
"""
import argparse
import os.path as osp
import pickle
import sys
from typing import Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

from mmrednet.converters import convert_state_dict, load_source, rednet_depth, stem_kernel_of
from mmrednet.utils.atomic_write import atomic_write

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSIFIER_BASE = osp.join(ROOT, 'configs', '_base_', 'models', 'rednet_imagenet.py')
DEPTHS = (26, 38, 50, 101, 152)


def _strict_problems(model: nn.Module, state_dict: Dict[str, Tensor]) -> List[str]:
    own = model.state_dict()
    problems = [f'missing in checkpoint: {k}' for k in own if k not in state_dict]
    problems += [f'not in the model: {k}' for k in state_dict if k not in own]
    problems += [f'shape {tuple(v.shape)} != model {tuple(own[k].shape)}: {k}'
                 for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    return problems


def _rednet_for(state_dict: Dict[str, Tensor], depth: int) -> nn.Module:
    from mmrednet.models import RedNet
    return RedNet(depth, stem_kernel=stem_kernel_of(state_dict))


def _classifier_for(state_dict: Dict[str, Tensor], depth: int) -> nn.Module:
    """The ImageNet configs' classifier (their shared model base) at this depth."""
    from mmengine.config import Config
    cfg = Config.fromfile(CLASSIFIER_BASE)
    out_features, in_features = state_dict['head.fc.weight'].shape
    cfg.model.backbone.update(depth=depth,
                              stem_kernel=stem_kernel_of(state_dict, 'backbone.'))
    cfg.model.head.update(num_classes=out_features, in_channels=in_features)
    return _build_model(cfg, 'mmpretrain')


def _build_model(cfg, default_scope: str) -> nn.Module:
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', default_scope))
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return MODELS.build(cfg.model)


def _model_from_config(path: str) -> nn.Module:
    from mmengine.config import Config
    return _build_model(Config.fromfile(path), 'mmdet')


def _check_depth(converted: Dict[str, Tensor], prefix: str, wanted: Optional[int]) -> int:
    depth = rednet_depth(converted, prefix)
    if wanted is not None and wanted != depth:
        raise ValueError(f'--depth {wanted}, but the checkpoint holds a RedNet-{depth} (its '
                         'stage block counts say so)')
    return depth


def _convert(args: argparse.Namespace):
    """``(converted state dict, report, model to check it against or None)``."""
    state_dict, meta = load_source(args.src, unsafe=args.unsafe_load)
    paddle = meta.get('source_format') == 'paddle'
    converted, report = convert_state_dict(state_dict, args.layout or (
        'imagenet' if paddle else None), args.stem_kernel, args.with_head)
    bare = report.layout == 'imagenet' and not args.with_head
    prefix = '' if bare else 'backbone.'
    # Before the report: a file of another model fails here with one clear line.
    depth = _check_depth(converted, prefix, args.depth)
    for line in report.lines():
        print(line)
    kernel = stem_kernel_of(converted, prefix)
    print(f'RedNet-{depth}, {kernel}x{kernel} stem involution'
          + (', from a PaddleClas .pdparams' if paddle else ''))
    if args.config:
        model = _model_from_config(args.config)
    elif report.layout != 'imagenet':
        model = None
    else:
        model = _rednet_for(converted, depth) if bare else _classifier_for(converted, depth)
    # Builtins only (numpy scalars as their values): the result loads under a
    # plain torch.load(weights_only=True).
    meta = dict(converted_from=osp.basename(args.src), layout=report.layout,
                source_meta={k: v.item() if isinstance(v, np.generic) else v
                             for k, v in meta.items()
                             if isinstance(v, (str, int, float, np.number))})
    return dict(state_dict=converted, meta=meta), report, model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('src', help='PaddleClas .pdparams, or a PyTorch checkpoint of the '
                        'original code')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--layout', choices=['imagenet', 'detector', 'segmentor'],
                        help='source layout (detected from the keys by default)')
    parser.add_argument('--stem-kernel', type=int, choices=[3, 5, 7],
                        help='embed the stem involution in this kernel size: 7 makes the '
                        'ImageNet weights (3x3 stem) load fully into the det/seg RedNets')
    parser.add_argument('--with-head', action='store_true',
                        help='ImageNet weights: write the whole mmpretrain classifier '
                        '(backbone.*, head.fc.*) instead of the bare backbone')
    parser.add_argument('--depth', type=int, choices=DEPTHS,
                        help='the RedNet depth you expect; an error if the keys show another')
    parser.add_argument('--config', help='check that the result loads strictly into the '
                        'model of this config')
    parser.add_argument('--force', action='store_true', help='overwrite an existing dst')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='read a PyTorch src with weights_only=False (only for files you '
                        'trust; .pdparams are always read with numpy arrays only)')
    args = parser.parse_args(argv)

    if not osp.isfile(args.src):
        parser.error(f'src {args.src} is not a file')
    if osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        parser.error('dst is the source checkpoint; refusing to overwrite the input')
    if osp.exists(args.dst) and not args.force:
        parser.error(f'{args.dst} exists; pass --force to overwrite it')

    try:
        checkpoint, report, model = _convert(args)
    except (ValueError, RuntimeError, pickle.UnpicklingError) as err:
        print(f'error: {err}\nnothing written', file=sys.stderr)
        return 1
    converted = checkpoint['state_dict']
    problems = _strict_problems(model, converted) if model is not None else []
    for line in problems:
        print(line)
    if report.unmapped or problems:
        print(f'error: {len(report.unmapped)} unmapped keys, {len(problems)} strict-load '
              f'problems; nothing written', file=sys.stderr)
        return 1
    if model is None:
        print('note: pass --config to check that the result loads strictly')
    # Readers see the old file or the whole new one; permissions as open() would give.
    atomic_write(args.dst, lambda f: torch.save(checkpoint, f))
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
