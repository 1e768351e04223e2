"""Params and FLOPs of an mmdet/mmseg/mmpretrain config, involution included.

FLOPs are multiply-adds of one image (mmengine's convention for convolutions),
counted by mmengine's jit-trace counter plus a handle for ``mmrednet::involution``
(``N*C*Ho*Wo*K*K``). Params are the trainable ones (``requires_grad``), as in
the original's tables; all parameters are printed beside them. Two-stage
detectors are measured like mmdet 2.x's ``forward_dummy``: 1000 RoIs through the
box head, 100 through the mask head.

Examples:
    python tools/analysis/get_flops.py configs/rednet/retinanet_rednet50_fpn_1x_coco.py
    python tools/analysis/get_flops.py CONFIG --shape 512 512
    python tools/analysis/get_flops.py --model-zoo            # every model of the metafiles
    python tools/analysis/get_flops.py --model-zoo --out model_zoo.md
    python tools/analysis/get_flops.py --model-zoo --metafile configs/rednet/metafile_imagenet.yml
"""
import argparse
import glob
import os.path as osp
import sys
from decimal import ROUND_HALF_UP, Decimal
from typing import Dict, List, Optional

import torch
import yaml
from mmengine.config import DictAction

from mmrednet.analysis.config_complexity import config_complexity

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METAFILES = sorted(glob.glob(osp.join(ROOT, 'configs', 'rednet', 'metafile*.yml')))
def _published(entry: Dict) -> Dict:
    meta = entry.get('Metadata', {})
    metrics = {}
    for result in entry.get('Results', []):
        metrics.update(result.get('Metrics', {}))
    return dict(params=meta.get('Parameters (M)'), flops=meta.get('FLOPs (G)'),
                shape=tuple(int(v) for v in str(meta.get('Input', '')).split('x') if v),
                metrics=metrics)


def _fmt(value, digits: int = 1) -> str:
    return '-' if value is None else f'{value:.{digits}f}'


def _decimals(published: Optional[float]) -> int:
    """Decimals of a published figure as the metafile spells it (at least 1)."""
    return 1 if published is None else max(1, len(repr(published).partition('.')[2]))


def _as_published(millions: float, decimals: int = 1) -> str:
    """Round like the original's tables: mmcv printed 2 decimals, the tables kept ``decimals``.

    The detection/segmentation tables printed 1 decimal of mmcv's 2 (rounded
    twice); the ImageNet table printed mmcv's 2.
    """
    two = Decimal(str(round(millions, 2)))
    return str(two.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def load_metafiles(metafiles: List[str]) -> Dict[str, Dict]:
    """``{config path relative to the repository: metafile entry}``; the first file wins."""
    entries: Dict[str, Dict] = {}
    for metafile in metafiles:
        with open(metafile) as f:
            for model in yaml.safe_load(f)['Models']:
                entries.setdefault(osp.normpath(model['Config']), model)
    return entries


def model_zoo_table(entries: Dict[str, Dict], configs: List[str]) -> List[str]:
    """Markdown rows: our params/FLOPs beside the published params/FLOPs/accuracy."""
    rows = ['| Config | Params (M) ours | Params (M) published | FLOPs (G) ours | '
            'FLOPs (G) published | Input | Published accuracy |',
            '|---|---:|---:|---:|---:|:---:|---|']
    for config in configs:
        key = osp.normpath(osp.relpath(osp.abspath(config), ROOT))
        pub = _published(entries[key]) if key in entries else dict(
            params=None, flops=None, shape=(), metrics={})
        ours = config_complexity(config, pub['shape'] or None)
        params, flops = ours['params'] / 1e6, ours['flops'] / 1e9
        digits = _decimals(pub['params'])
        mark = ('' if pub['params'] is None
                or _as_published(params, digits) == _fmt(pub['params'], digits) else ' (!)')
        metrics = ', '.join(f'{k} {v}' for k, v in pub['metrics'].items()) or '-'
        flops_digits = _decimals(pub['flops'])
        rows.append(f'| {osp.splitext(osp.basename(config))[0]} | {_fmt(params, 2)}{mark} | '
                    f'{_fmt(pub["params"], digits)} | {_fmt(flops, flops_digits)} | '
                    f'{_fmt(pub["flops"], flops_digits)} | '
                    f'{ours["shape"][0]}x{ours["shape"][1]} | {metrics} |')
        print(rows[-1], file=sys.stderr, flush=True)  # progress: each takes a while
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('config', nargs='?', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size (default 1280 800 for mmdet, 1024 2048 for mmseg, '
                        '224 224 for mmpretrain)')
    parser.add_argument('--model-zoo', action='store_true',
                        help='table of every config in the metafiles and in configs/rednet')
    parser.add_argument('--metafile', help='published figures (YAML); with it, --model-zoo '
                        'measures only its configs (default: configs/rednet/metafile*.yml and '
                        'every other config in configs/rednet)')
    parser.add_argument('--out', help='also write the model-zoo table (markdown) here')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)

    if args.model_zoo:
        entries = load_metafiles([args.metafile] if args.metafile else METAFILES)
        listed = [osp.join(ROOT, c) for c in entries]
        others = [] if args.metafile else sorted(
            set(glob.glob(osp.join(ROOT, 'configs', 'rednet', '*.py'))) -
            {osp.abspath(c) for c in listed})
        rows = model_zoo_table(entries, listed + others)
        print('\n'.join(rows))
        print('Params: trainable, 2 decimals as mmcv printed them; (!) marks a difference from the '
              'published figure after the same rounding to its decimals.')
        if args.out:
            with open(args.out, 'w') as f:
                f.write('\n'.join(rows) + '\n')
        return
    if args.config is None:
        parser.error('give a config, or --model-zoo')
    result = config_complexity(args.config, tuple(args.shape) if args.shape else None,
                               args.cfg_options)
    height, width = result['shape']
    print(f'Input shape: 3x{height}x{width}')
    print(f'FLOPs (multiply-adds): {result["flops"] / 1e9:.2f} G')
    print(f'Params: {result["params"] / 1e6:.2f} M trainable, '
          f'{result["params_all"] / 1e6:.2f} M in all')
    print('FLOPs by operator (G): ' + ', '.join(
        f'{op} {v / 1e9:.2f}' for op, v in sorted(result['by_operator'].items())))
    if result['unsupported']:
        print('Not counted (no FLOP handle): ' + ', '.join(sorted(result['unsupported'])))


if __name__ == '__main__':
    main()
