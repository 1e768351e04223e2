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

Without ``--dynamic`` the graph takes one image size and batch 1 (``tools/test.py``
then tests with ``batch_size=1``).
"""
import argparse
import sys

from mmrednet.deployment import ExportCheckError, UnsupportedModelError
from mmrednet.deployment.export_cli import export_argument_parser
from mmrednet.deployment.onnx.export import export_onnx


def parse_args(argv=None) -> argparse.Namespace:
    parser = export_argument_parser('Export a model to ONNX (checked in '
                                    'onnxruntime against PyTorch before it is written)', '.onnx')
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
