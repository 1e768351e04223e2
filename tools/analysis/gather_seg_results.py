"""Gather the mIoU of segmentation runs into the README's results table.

Reads the test and validation results mmengine leaves in each work dir, beside
the published figures of the metafile (see mmrednet.analysis.seg_results).

Example::

    python tools/analysis/gather_seg_results.py work_dirs/* --out results.md
"""
import argparse
import os.path as osp

from mmrednet.analysis.seg_results import gather

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METAFILE = osp.join(ROOT, 'configs', 'rednet', 'metafile_cityscapes.yml')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('work_dirs', nargs='+', help='work dirs of training/test runs')
    parser.add_argument('--metafile', default=METAFILE, help='published figures (YAML)')
    parser.add_argument('--per-class', action='store_true', help='add a per-class IoU table')
    parser.add_argument('--out', help='also write the table (markdown) here')
    args = parser.parse_args(argv)
    lines = gather(args.work_dirs, args.metafile, args.per_class)
    print('\n'.join(lines))
    if args.out:
        with open(args.out, 'w') as f:
            f.write('\n'.join(lines) + '\n')


if __name__ == '__main__':
    main()
