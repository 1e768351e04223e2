"""Benchmark training memory and step time: RedNet-50 (memory saving on/off) vs ResNet-50.

Each model is measured in its own process on the same input and batch, for
the bare backbone, RetinaNet and Faster R-CNN: peak memory of a training step
(torch's allocator, and the process's resident memory), memory kept for
backward, the involution layers' share of it, and step time
(``mmrednet.benchmarks.memory`` says what each figure is and how it is taken).
Prints the tables and, with ``--out-dir``, writes ``memory.csv``,
``memory_ratios.csv`` and ``memory.png``.

Targets: RedNet-50 peak <= 0.9x ResNet-50's (the allocator's); involution MB
after <= 60% of before; step time after <= 1.10 x before.

Examples::

    # CPU defaults (small: backbone 2x320x320, detectors 1x384x384)
    python tools/benchmark_memory.py --out-dir work_dirs/memory
    # the user report's setting on a GPU: mmdet defaults, 2 images of 1333x800 per GPU
    python tools/benchmark_memory.py --device cuda --batch 2 --size 800 1333 \\
        --det-batch 2 --det-size 800 1333
"""
import argparse
import sys

import torch
from rich.console import Console

from mmrednet.benchmarks.memory import (
    DEFAULT_VARIANTS,
    SECTIONS,
    UNSUPPORTED,
    VARIANTS,
    Job,
    run_all,
)
from mmrednet.benchmarks.memory_report import print_tables, summarize, write_outputs


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=2, help='backbone batch')
    parser.add_argument('--size', type=int, nargs='+', default=[320],
                        help='backbone input H [W]')
    parser.add_argument('--det-batch', type=int, default=1, help='detector batch')
    parser.add_argument('--det-size', type=int, nargs='+', default=[384],
                        help='detector image H [W]')
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument('--variants', nargs='+', choices=VARIANTS,
                        default=list(DEFAULT_VARIANTS))
    parser.add_argument('--repeat', type=int, default=3, help='timed steps per model')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch CPU threads of each worker')
    parser.add_argument('--out-dir', help='write memory.csv, memory_ratios.csv, memory.png')
    args = parser.parse_args(argv)
    for name in ('size', 'det_size'):
        value = getattr(args, name)
        if len(value) not in (1, 2):
            parser.error(f'--{name.replace("_", "-")} takes H or H W')
        setattr(args, name, (value[0], value[-1]))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    console = Console(width=150)
    console.print(f'device {args.device}, torch {torch.__version__}, {args.threads} threads '
                  'per worker, one spawned process per model')
    jobs = [
        Job(section, variant, args.device,
            args.batch if section == 'backbone' else args.det_batch,
            args.size if section == 'backbone' else args.det_size, args.repeat, args.threads)
        for section in args.sections for variant in args.variants
        if (section, variant) not in UNSUPPORTED
    ]
    if not jobs:
        sys.exit(f'error: nothing to measure: {sorted(UNSUPPORTED)} (section, variant) pairs '
                 'are not measured (mmcv\'s CPU RoIAlign misreads channels-last maps)')
    rows = run_all(jobs, console)
    summary = summarize(rows)
    print_tables(console, rows, summary)
    if args.out_dir:
        write_outputs(args.out_dir, rows, summary)
        console.print(f'wrote {args.out_dir}/memory.csv, memory_ratios.csv, memory.png')


if __name__ == '__main__':
    main()
