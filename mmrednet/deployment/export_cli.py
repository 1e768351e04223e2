"""The command line the exporters share (``tools/deployment/export_*.py``)."""
import argparse

from .pipeline import ATOL, RTOL


def export_argument_parser(description: str, suffix: str) -> argparse.ArgumentParser:
    """A parser with the arguments every exporter takes.

    Args:
        description (str): what the tool does.
        suffix (str): the file the tool writes, e.g. ``'.onnx'``, for ``--out``'s help.

    Returns:
        argparse.ArgumentParser: config, checkpoint, ``--out``, ``--shape``,
        ``--dynamic``, ``--atol`` and ``--rtol``; a tool adds its own.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('config', help='mmpretrain, mmseg or mmdet config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', required=True, help=f'the {suffix} file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (multiples of 32 for detectors and '
                        'segmentors); default: the first test image\'s size, else the test '
                        'pipeline\'s')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch size and image size')
    parser.add_argument('--atol', type=float, default=ATOL,
                        help='check tolerance: atol + rtol * max |pytorch| per output')
    parser.add_argument('--rtol', type=float, default=RTOL, help='see --atol')
    return parser
