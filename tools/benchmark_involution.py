"""Benchmark the involution op and RedNet-50 against their baselines, in one run.

CPU op section (``mmrednet.benchmarks.op``): each kernel of the op (forward,
grad_input, grad_weight) on the RedNet-50 stage shapes, in both layouts the CPU
kernels compute in place, against the copy bandwidth measured in the same run;
then forward+backward time and extra peak memory against the unfold reference.
Model section (``mmrednet.benchmarks.backbones``): RedNet-50 against mmdet's
ResNet-50 backbone (both with ``norm_eval=False``), inference at each
``--model-inputs`` size and a training step at each ``--train-inputs`` size,
timed alternately; ResNet-50 run channels-last and RedNet-50 returning
channels-last maps are shown for context. Every CPU timing interleaves the
sides and reverses their order every other repeat, so that neither always runs
first. Layout section (``mmrednet.benchmarks.layout``): the same backbones
profiled once per mode (inference at the first model input, a training step at
the first train input): layout conversions, copies, elements copied, and
convolutions on oneDNN against torch's slow fallback.
CUDA section (whenever a GPU is present; ``mmrednet.benchmarks.cuda_op``,
``mmrednet.benchmarks.retinanet``): forward and backward of the CuPy kernels on
the RedNet-50 stage shapes at batch 32, fp32 and fp16, as a fraction of the
copy bandwidth measured in the run, beside the traffic model's floor
(``mmrednet.benchmarks.traffic``), and against the unfold reference and a
one-thread-per-output kernel; RetinaNet RedNet-50 vs ResNet-50 AMP training
step time and peak memory (batch 8, 1333x800). Without a GPU it prints the
traffic model alone.

Example::

    python tools/benchmark_involution.py --threads 2 --out-dir work_dirs/benchmark
"""
import argparse
from pathlib import Path

import torch
from rich.console import Console

from mmrednet.benchmarks import traffic
from mmrednet.benchmarks.backbones import backbone_models, benchmark_models, parse_input
from mmrednet.benchmarks.cuda_op import benchmark_cuda_op
from mmrednet.benchmarks.cuda_report import print_cuda, write_cuda
from mmrednet.benchmarks.cuda_timing import copy_bandwidth
from mmrednet.benchmarks.layout import benchmark_layout
from mmrednet.benchmarks.op import benchmark_kernels, benchmark_op
from mmrednet.benchmarks.op_report import print_cpu, write_cpu
from mmrednet.benchmarks.retinanet import benchmark_retinanet
from mmrednet.ops import cpu

RETINANET_CONFIG = (Path(__file__).resolve().parents[1] / 'configs' / 'rednet' /
                    'retinanet_rednet50_fpn_1x_coco.py')


def run_cuda_section(args, console: Console) -> None:
    traffic.print_tables(console, args.cuda_batch,
                         torch.cuda.get_device_properties(0).multi_processor_count)
    bandwidth = copy_bandwidth(args.repeat)
    op_rows = benchmark_cuda_op(args.cuda_batch, args.repeat, bandwidth)
    retina_rows = []
    if not args.skip_model:
        retina_rows = benchmark_retinanet(RETINANET_CONFIG, args.retina_batch, 800, 1333,
                                          args.repeat)
    print_cuda(console, bandwidth, op_rows, retina_rows)
    if args.out_dir:
        write_cuda(args.out_dir, op_rows, retina_rows)
        console.print(f'wrote {args.out_dir}/cuda_op.csv, retinanet.csv, cuda_benchmark.png')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads for every measurement (default 2)')
    parser.add_argument('--batch', type=int, default=8, help='op batch size')
    parser.add_argument('--model-inputs', nargs='+',
                        default=['1x224x224', '2x320x320', '1x800x1344'],
                        help='backbone inference inputs as NxHxW (the first is also profiled)')
    parser.add_argument('--train-inputs', nargs='+', default=['2x320x320'],
                        help='backbone training-step inputs as NxHxW (the first is also '
                        'profiled)')
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--quick', action='store_true',
                        help='fewer repeats, a batch of 2 for the op, one small model input '
                        '(a smoke run)')
    parser.add_argument('--skip-op', action='store_true',
                        help='skip the CPU kernel and op sections (models only)')
    parser.add_argument('--skip-model', action='store_true')
    parser.add_argument('--cuda-batch', type=int, default=32,
                        help='batch of the CUDA op section (RedNet-50 stage shapes)')
    parser.add_argument('--retina-batch', type=int, default=8,
                        help='batch of the RetinaNet 1333x800 AMP training step')
    parser.add_argument('--skip-cuda', action='store_true',
                        help='skip the CUDA section (it runs whenever a GPU is present)')
    parser.add_argument('--out-dir', help='write kernels.csv, op.csv, model.csv, layout.csv '
                        'and benchmark.png here')
    args = parser.parse_args(argv)
    for text in args.model_inputs + args.train_inputs:
        try:
            parse_input(text)
        except ValueError as exc:
            parser.error(f'--model-inputs/--train-inputs: {exc}')
    return args


def main():
    args = parse_args()
    if args.quick:
        args.batch, args.repeat = 2, 2
        args.model_inputs = args.train_inputs = ['1x64x64']
        args.cuda_batch, args.retina_batch = 4, 2
    torch.set_num_threads(args.threads)
    console = Console(width=150)  # full tables also when written to a file
    isa = cpu.isa() if cpu.AVAILABLE else 'portable (no compiled kernels)'
    console.print(f'device {args.device}, torch {torch.__version__}, '
                  f'{torch.get_num_threads()} threads, CPU kernels: {isa}')
    kernel_rows = (benchmark_kernels(args.batch, args.repeat)
                   if args.device == 'cpu' and not args.skip_op else [])
    op_rows = [] if args.skip_op else benchmark_op(args.batch, args.device, args.repeat)
    model_rows, layout_rows = [], []
    if not args.skip_model:
        models = backbone_models()
        model_rows = benchmark_models(args.model_inputs, args.train_inputs, models,
                                      args.device, args.repeat)
        if args.device == 'cpu':  # the profile counts CPU operators
            layout_rows = benchmark_layout(models, args.model_inputs[0], args.train_inputs[0])
    print_cpu(console, kernel_rows, op_rows, model_rows, layout_rows)
    if args.out_dir:
        write_cpu(args.out_dir, kernel_rows, op_rows, model_rows, layout_rows)
        console.print(f'wrote the CSV files and benchmark.png to {args.out_dir}')
    if torch.cuda.is_available() and not args.skip_cuda:
        run_cuda_section(args, console)
    elif not args.skip_cuda:
        traffic.print_tables(console, args.cuda_batch)


if __name__ == '__main__':
    main()
