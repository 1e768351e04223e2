"""Prepare the official Cityscapes download for mmseg's ``CityscapesDataset``.

Writes the ``*_gtFine_labelTrainIds.png`` of every ``*_gtFine_polygons.json``
and the split lists, resumably and never into the download itself (see
mmrednet.dataset_converters.cityscapes).

Example::

    python tools/dataset_converters/cityscapes.py data/cityscapes --nproc 8
"""
import argparse

from mmrednet.dataset_converters.cityscapes import convert


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert Cityscapes polygon annotations to labelTrainIds PNGs '
        '(resumable; never modifies the download)')
    parser.add_argument('cityscapes_path', help='root holding leftImg8bit/ and gtFine/')
    parser.add_argument('--gt-dir', default='gtFine', help='annotation folder (gtFine, gtCoarse)')
    parser.add_argument('-o', '--out-dir',
                        help='where to write <gt-dir>/... label images and the split '
                        'lists (default: cityscapes_path, beside the JSON files)')
    parser.add_argument('--nproc', default=1, type=int, help='number of processes')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    summary = convert(args.cityscapes_path, args.out_dir, args.gt_dir, args.nproc)
    print(f"\n{summary['written']} label images written, "
          f"{summary['skipped']} already complete")
    for path, count in summary['splits']:
        print(f'{path}: {count} frames')


if __name__ == '__main__':
    main()
