"""Convert a checkpoint of the original involution code into one mmrednet loads strictly.

Layouts (detected from the keys): mmcls ImageNet classifiers (the backbone is
kept, without prefix, for a backbone ``init_cfg=dict(type='Pretrained')``),
mmdet 2.x detectors and mmseg 0.x segmentors (whole models, for ``load_from``
or tools/test.py). Every key that cannot be mapped is reported. With
``--config`` the result is loaded strictly into that config's model, and
ImageNet backbones are always checked against a RedNet of the matching depth.

Examples:
    # ImageNet RedNet-50 for the detection/segmentation configs (7x7 stem):
    python tools/convert_official_checkpoint.py rednet50.pth \\
        checkpoints/rednet50_imagenet.pth --stem-kernel 7
    # A trained detector of the original:
    python tools/convert_official_checkpoint.py mask_rcnn_red50_neck_fpn_head_1x_coco.pth \\
        checkpoints/mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.pth \\
        --config configs/rednet/mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.py
"""
import argparse
import os
import os.path as osp
import sys
import tempfile
from typing import Dict, List

import torch
from torch import Tensor, nn

from mmrednet.converters import convert_state_dict
from mmrednet.converters.official import load_source

_DEPTH_BY_LAYER3 = {4: 26, 5: 38, 6: 50, 23: 101, 36: 152}


def _strict_problems(model: nn.Module, state_dict: Dict[str, Tensor]) -> List[str]:
    own = model.state_dict()
    problems = [f'missing in checkpoint: {k}' for k in own if k not in state_dict]
    problems += [f'not in the model: {k}' for k in state_dict if k not in own]
    problems += [f'shape {tuple(v.shape)} != model {tuple(own[k].shape)}: {k}'
                 for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    return problems


def _rednet_for(state_dict: Dict[str, Tensor]) -> nn.Module:
    from mmrednet.models import RedNet
    blocks = {int(k.split('.')[1]) for k in state_dict if k.startswith('layer3.')}
    depth = _DEPTH_BY_LAYER3.get(len(blocks))
    if depth is None:
        raise ValueError(f'layer3 has {len(blocks)} blocks: no RedNet depth has that')
    span = state_dict['stem.1.conv2.conv.bias'].numel()
    groups = state_dict['stem.1.conv1.conv.weight'].shape[1] // 16
    return RedNet(depth, stem_kernel=round((span / groups)**0.5))


def _model_from_config(path: str) -> nn.Module:
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    cfg = Config.fromfile(path)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    return MODELS.build(cfg.model)


def _save_atomically(obj: dict, dst: str) -> None:
    folder = osp.dirname(osp.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + osp.basename(dst), suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, dst)  # readers see the old file or the whole new one
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('src', help='checkpoint of the original code')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--layout', choices=['imagenet', 'detector', 'segmentor'],
                        help='source layout (detected from the keys by default)')
    parser.add_argument('--stem-kernel', type=int, choices=[3, 5, 7],
                        help='embed the stem involution in this kernel size: 7 makes the '
                        'ImageNet weights (3x3 stem) load fully into the det/seg RedNets')
    parser.add_argument('--config', help='check that the result loads strictly into the '
                        'model of this config')
    parser.add_argument('--force', action='store_true', help='overwrite an existing dst')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='read src with weights_only=False (only for files you trust)')
    args = parser.parse_args(argv)

    if osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        parser.error('dst is the source checkpoint; refusing to overwrite the input')
    if osp.exists(args.dst) and not args.force:
        parser.error(f'{args.dst} exists; pass --force to overwrite it')

    state_dict, meta = load_source(args.src, unsafe=args.unsafe_load)
    converted, report = convert_state_dict(state_dict, args.layout, args.stem_kernel)
    for line in report.lines():
        print(line)

    model = None
    if args.config:
        model = _model_from_config(args.config)
    elif report.layout == 'imagenet':
        model = _rednet_for(converted)
    problems = _strict_problems(model, converted) if model is not None else []
    for line in problems:
        print(line)
    if report.unmapped or problems:
        print(f'error: {len(report.unmapped)} unmapped keys, {len(problems)} strict-load '
              f'problems; nothing written', file=sys.stderr)
        return 1
    if model is None:
        print('note: pass --config to check that the result loads strictly')

    meta = dict(converted_from=osp.basename(args.src), layout=report.layout,
                source_meta={k: v for k, v in meta.items()
                             if isinstance(v, (str, int, float))})
    _save_atomically(dict(state_dict=converted, meta=meta), args.dst)
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
