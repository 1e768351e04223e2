"""Benchmark the fused involution op against its composition on the CPU, per RedNet-50 shape.

For every bottleneck involution of RedNet-50 at each input size (stages 1-4:
64, 128, 256, 512 channels, 7x7, 16 channels a group, hidden = channels / 4),
in both layouts (channels-last, what RedNet runs on the CPU, and contiguous):
forward (``span conv + involution`` vs ``involution_fused``) and backward (the
composition's three kernels with its kept kernel vs the fused op's two, which
generate the kernel again). Ratios are medians of paired ratios over
interleaved rounds (see ``mmrednet.benchmarks.fused``); ``--breakdown`` adds
the time of each part and of the span's product as one GEMM.

Example::

    python tools/benchmark_fused.py --threads 2 --rounds 15 --out-dir work_dirs/fused
"""
import argparse

import torch
from rich.console import Console
from rich.progress import track

from mmrednet.benchmarks.fused import LAYOUTS, benchmark_fused, rednet50_shapes
from mmrednet.benchmarks.fused_report import print_fused, write_fused
from mmrednet.ops import cpu


def size(text: str):
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected HxW (e.g. 224x224), got {text!r}') from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f'sizes must be >= 1, got {text!r}')
    return height, width


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads for every measurement (default 2)')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--sizes', type=size, nargs='+', default=[(224, 224), (800, 1344)],
                        help='model input sizes as HxW (default 224x224 800x1344)')
    parser.add_argument('--channels', type=int, nargs='+', choices=(64, 128, 256, 512),
                        help='only these stages (by their channels)')
    parser.add_argument('--layouts', nargs='+', choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument('--strided', action='store_true',
                        help='also the stride-2 involutions opening stages 2-4')
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--breakdown', action='store_true',
                        help='also time each part of both sides, and the span as one GEMM')
    parser.add_argument('--out-dir', help='write fused.csv and fused.png here')
    args = parser.parse_args(argv)
    for name in ('threads', 'batch', 'rounds'):
        if getattr(args, name) < 1:
            parser.error(f'--{name} must be >= 1, got {getattr(args, name)}')
    return args


def main(argv=None):
    args = parse_args(argv)
    if not cpu.AVAILABLE:
        raise SystemExit('error: the compiled op library is not built: nothing fused to measure '
                         '(python setup.py build_ext --inplace)')
    torch.set_num_threads(args.threads)
    console = Console(width=200)
    console.print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
                  f'CPU kernels: {cpu.isa()}')
    shapes = rednet50_shapes(args.batch, args.sizes, args.strided)
    if args.channels:
        shapes = [s for s in shapes if s.channels in args.channels]
    rows = benchmark_fused(shapes, args.batch, args.rounds, args.breakdown, args.layouts,
                           progress=lambda items: track(items, description='fused vs composed',
                                                        console=console))
    print_fused(console, rows)
    if args.out_dir:
        write_fused(args.out_dir, rows)
        console.print(f'wrote {args.out_dir}/fused.csv, fused.png')


if __name__ == '__main__':
    main()
