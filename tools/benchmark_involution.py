"""Benchmark the involution op and RedNet-50 against their baselines, in one run.

Op section: forward+backward time and extra peak memory of ``mmrednet.ops.involution``
against the unfold reference, on the RedNet-50 stage shapes.
Model section: RedNet-50 against mmdet's ResNet-50 backbone, training step
and inference. Every ratio is against a baseline measured in the same run.

Example::

    python tools/benchmark_involution.py --out-dir work_dirs/benchmark
"""
import argparse
import csv
import os
from dataclasses import asdict, dataclass
from typing import Callable, List

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from mmrednet.ops import involution, involution_reference
from mmrednet.utils import peak_memory, time_call

# RedNet-50 stages: (channels of the involution, feature size); K=7, 16 channels a group.
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]
TARGETS = dict(op_speedup=10.0, op_memory_ratio=0.1, train_ratio=2.0, infer_ratio=1.5)


@dataclass
class OpRow:
    shape: str
    ours_ms: float
    reference_ms: float
    speedup: float
    ours_mb: float
    reference_mb: float
    memory_ratio: float


@dataclass
class ModelRow:
    mode: str
    rednet_ms: float
    resnet_ms: float
    ratio: float
    target: float


def _fwd_bwd(fn, x, w):
    def step():
        x.grad = w.grad = None
        fn(x, w, 1, 3).sum().backward()
    return step


def benchmark_op(batch: int, device: str, repeat: int) -> List[OpRow]:
    rows = []
    for channels, size in track(STAGES, description='op shapes'):
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        w = torch.randn(batch, channels // 16, 7, 7, size, size, device=device,
                        requires_grad=True)
        ours, ref = _fwd_bwd(involution, x, w), _fwd_bwd(involution_reference, x, w)
        t_ours = time_call(ours, device, repeat=repeat)
        t_ref = time_call(ref, device, repeat=max(1, repeat // 2))
        m_ours, m_ref = peak_memory(ours, device), peak_memory(ref, device)
        rows.append(
            OpRow(f'{batch}x{channels}x{size}x{size}', t_ours * 1e3, t_ref * 1e3, t_ref / t_ours,
                  m_ours / 2**20, m_ref / 2**20, m_ours / m_ref))
    return rows


def _backbones():
    from mmdet.models.backbones import ResNet

    from mmrednet.models import RedNet
    return RedNet(depth=50), ResNet(depth=50)


def benchmark_models(batch: int, size: int, device: str, repeat: int) -> List[ModelRow]:
    rednet, resnet = (m.to(device) for m in _backbones())
    x = torch.randn(batch, 3, size, size, device=device)

    def train_step(model) -> Callable[[], None]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            model.train()
            optimizer.zero_grad()
            sum(o.float().mean() for o in model(x)).backward()
            optimizer.step()
        return step

    def inference(model) -> Callable[[], None]:
        def run():
            model.eval()
            with torch.no_grad():
                model(x)
        return run

    rows = []
    for mode, make, target in (('train step', train_step, TARGETS['train_ratio']),
                               ('inference', inference, TARGETS['infer_ratio'])):
        t_red = time_call(make(rednet), device, repeat=repeat)
        t_res = time_call(make(resnet), device, repeat=repeat)
        rows.append(ModelRow(mode, t_red * 1e3, t_res * 1e3, t_red / t_res, target))
    return rows


def _print(console: Console, op_rows: List[OpRow], model_rows: List[ModelRow]) -> None:
    table = Table(title='involution op: forward+backward vs unfold reference')
    for col in ('shape', 'ours ms', 'reference ms', 'speedup', 'ours MB', 'reference MB',
                'memory ratio'):
        table.add_column(col, justify='right')
    for r in op_rows:
        table.add_row(r.shape, f'{r.ours_ms:.1f}', f'{r.reference_ms:.1f}', f'{r.speedup:.1f}x',
                      f'{r.ours_mb:.1f}', f'{r.reference_mb:.1f}', f'{r.memory_ratio:.3f}')
    console.print(table)
    console.print(f"targets: speedup >= {TARGETS['op_speedup']:.0f}x, memory ratio <= "
                  f"{TARGETS['op_memory_ratio']}")
    if model_rows:
        table = Table(title='RedNet-50 vs ResNet-50 (mmdet) backbone')
        for col in ('mode', 'RedNet-50 ms', 'ResNet-50 ms', 'ratio', 'target'):
            table.add_column(col, justify='right')
        for r in model_rows:
            table.add_row(r.mode, f'{r.rednet_ms:.0f}', f'{r.resnet_ms:.0f}', f'{r.ratio:.2f}x',
                          f'<= {r.target}x')
        console.print(table)


def _write(out_dir: str, op_rows: List[OpRow], model_rows: List[ModelRow]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    for name, rows in (('op', op_rows), ('model', model_rows)):
        if rows:
            with open(os.path.join(out_dir, f'{name}.csv'), 'w', newline='') as f:
                writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
                writer.writeheader()
                writer.writerows(asdict(r) for r in rows)
    fig, axes = plt.subplots(1, 3 if model_rows else 2, figsize=(13, 3.8))
    shapes = [r.shape for r in op_rows]
    axes[0].bar(shapes, [r.speedup for r in op_rows], color='tab:blue')
    axes[0].axhline(TARGETS['op_speedup'], color='red', ls='--', label='target')
    axes[0].set_title('op fwd+bwd speedup vs unfold')
    axes[1].bar(shapes, [r.memory_ratio for r in op_rows], color='tab:green')
    axes[1].axhline(TARGETS['op_memory_ratio'], color='red', ls='--', label='target')
    axes[1].set_title('op extra peak memory / unfold')
    for ax in axes[:2]:
        ax.tick_params(axis='x', labelrotation=20)
        ax.legend()
    if model_rows:
        axes[2].bar([r.mode for r in model_rows], [r.ratio for r in model_rows],
                    color='tab:orange')
        for i, r in enumerate(model_rows):
            axes[2].hlines(r.target, i - 0.4, i + 0.4, color='red', ls='--')
        axes[2].set_title('RedNet-50 time / ResNet-50 time')
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'benchmark.png'), dpi=110)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=8, help='op batch size')
    parser.add_argument('--model-batch', type=int, default=2)
    parser.add_argument('--model-size', type=int, default=320)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--quick', action='store_true',
                        help='fewer repeats and a batch of 2 for the op (a smoke run)')
    parser.add_argument('--skip-model', action='store_true')
    parser.add_argument('--out-dir', help='write op.csv, model.csv and benchmark.png here')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.quick:
        args.batch, args.repeat = 2, 2
    console = Console()
    console.print(f'device {args.device}, torch {torch.__version__}, '
                  f'{torch.get_num_threads()} threads')
    op_rows = benchmark_op(args.batch, args.device, args.repeat)
    model_rows = [] if args.skip_model else benchmark_models(
        args.model_batch, args.model_size, args.device, args.repeat)
    _print(console, op_rows, model_rows)
    if args.out_dir:
        _write(args.out_dir, op_rows, model_rows)
        console.print(f'wrote {args.out_dir}/op.csv, model.csv, benchmark.png')


if __name__ == '__main__':
    main()
