"""Export an mmpretrain classifier, mmseg segmentor or mmdet detector to ONNX.

The graph is checked in onnxruntime against PyTorch on a real input (the first
test image if the config's test set is there, else a deterministic random
image) before anything is written; the largest difference is printed, and the
export is refused above the tolerance. Two-stage detectors also write their
RoI heads beside ``--out`` (``model.bbox_head.onnx``, ``model.mask_head.onnx``).

Examples:
    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx
    python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx \\
        --shape 800 1344 --dynamic
    python tools/test.py CONFIG --backend onnxruntime --onnx model.onnx
"""
import argparse
import sys

from mmrednet.deployment import export_onnx
from mmrednet.deployment.exporter import ATOL, RTOL, ExportCheckError
from mmrednet.deployment.graphs import UnsupportedModelError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Export a model to ONNX (checked in '
                                     'onnxruntime against PyTorch before it is written)')
    parser.add_argument('config', help='mmpretrain, mmseg or mmdet config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (multiples of 32 for detectors and '
                        'segmentors); default: the first test image\'s size, else the test '
                        'pipeline\'s')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch size and image size')
    parser.add_argument('--atol', type=float, default=ATOL,
                        help='check tolerance: atol + rtol * max |pytorch| per output')
    parser.add_argument('--rtol', type=float, default=RTOL, help='see --atol')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return export_onnx(args.config, args.checkpoint, args.out, shape=args.shape,
                           dynamic=args.dynamic, atol=args.atol, rtol=args.rtol)
    except (OSError, ValueError, UnsupportedModelError, ExportCheckError) as error:
        sys.exit(f'export_onnx: {error}')


if __name__ == '__main__':
    main()
