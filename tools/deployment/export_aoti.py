"""Export an mmpretrain classifier, mmseg segmentor or mmdet detector to an AOTInductor package.

``torch.export`` + AOTInductor (weights frozen): a ``.pt2`` that PyTorch's
runtime loads in Python (``tools/test.py --backend aoti``) or in C++
(``tools/deployment/cpp``), calling our involution kernel. The same graphs as
``export_onnx.py`` (the framework's post-processing stays in Python); every
graph of the model goes into the one ``.pt2``. The package is loaded and
checked against PyTorch on a real input (the first test image if the
config's test set is there, else a deterministic random image) before it is
written; the largest difference is printed, and the export is refused above
the tolerance. The package runs only with the torch release, the CPU
instruction set and the op library it was built with; loading it elsewhere
gives an error that says which.

Examples:
    python tools/deployment/export_aoti.py CONFIG CHECKPOINT --out model.pt2
    python tools/deployment/export_aoti.py CONFIG CHECKPOINT --out model.pt2 \\
        --shape 800 1344 --dynamic
    python tools/test.py CONFIG --backend aoti --package model.pt2

Without ``--dynamic`` the package takes one image size and batch 1 (``tools/test.py``
then tests with ``batch_size=1``). PyTorch's own loader runs it too:
``torch._inductor.aoti_load_package('model.pt2')`` (the main graph), after
``torch.ops.load_library`` of mmrednet's op library or ``import mmrednet``.
"""
import argparse
import sys

from mmrednet.deployment import ExportCheckError, UnsupportedModelError, export_aoti
from mmrednet.deployment.export_cli import export_argument_parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = export_argument_parser('Export a model to an AOTInductor package '
                                    '(checked against PyTorch before it is written)', '.pt2')
    parser.add_argument('--threads', type=int,
                        help='threads AOTInductor\'s own loops are compiled for (default: '
                        'torch\'s intra-op threads, e.g. OMP_NUM_THREADS); 1 compiles them '
                        'serial')
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        return export_aoti(args.config, args.checkpoint, args.out, shape=args.shape,
                           dynamic=args.dynamic, atol=args.atol, rtol=args.rtol,
                           threads=args.threads)
    except (OSError, ValueError, UnsupportedModelError, ExportCheckError) as error:
        sys.exit(f'export_aoti: {error}')


if __name__ == '__main__':
    main()
