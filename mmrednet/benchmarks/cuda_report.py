"""The CUDA section's tables and files (:mod:`.cuda_op`, :mod:`.retinanet`)."""
import os
from typing import List

import torch
from rich.console import Console
from rich.table import Table

from mmrednet.ops import cuda
from mmrednet.utils import write_csv

from .cuda_op import CUDA_TARGETS, CudaOpRow
from .retinanet import RetinaRow


def print_cuda(console: Console, bandwidth: float, op_rows: List[CudaOpRow],
                retina_rows: List[RetinaRow]) -> None:
    console.print(f'CUDA: {torch.cuda.get_device_name()}, device-to-device copy '
                  f'{bandwidth / 1e9:.0f} GB/s; kernels: '
                  f'{cuda.unavailable_reason() or "CuPy kernels"}')
    if op_rows:
        table = Table(title='CUDA involution op: time, bandwidth, vs (a) unfold reference and '
                      '(b) one-thread-per-output kernel')
        for col in ('shape', 'dtype', 'pass', 'ours ms', 'floor ms', '(a) ms', '(b) ms', 'GB/s',
                    'of copy', 'vs (a)', 'vs (b)'):
            table.add_column(col, justify='right')
        for r in op_rows:
            table.add_row(r.shape, r.dtype, r.direction, f'{r.ours_ms:.3f}', f'{r.floor_ms:.3f}',
                          f'{r.reference_ms:.2f}', f'{r.baseline_ms:.3f}', f'{r.ours_gbs:.0f}',
                          f'{r.copy_fraction:.0%}', f'{r.vs_reference:.1f}x',
                          f'{r.vs_baseline:.1f}x')
        console.print(table)
        console.print(f"targets: >= {CUDA_TARGETS['copy_fraction']:.0%} of copy bandwidth, "
                      f">= {CUDA_TARGETS['baseline_speedup']:.0f}x vs (b); floor: the traffic "
                      "model's minimal bytes at the copy bandwidth")
    if retina_rows:
        table = Table(title='RetinaNet-FPN AMP training step: RedNet-50 vs ResNet-50')
        for col in ('backbone', 'step ms', 'peak MB', 'time ratio', 'memory ratio', 'target'):
            table.add_column(col, justify='right')
        for r in retina_rows:
            table.add_row(r.backbone, f'{r.step_ms:.0f}', f'{r.peak_mb:.0f}',
                          f'{r.time_ratio:.2f}x', f'{r.memory_ratio:.2f}x',
                          f'<= {r.target_time_ratio}x')
        console.print(table)


def write_cuda(out_dir: str, op_rows: List[CudaOpRow], retina_rows: List[RetinaRow]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    for name, rows in (('cuda_op', op_rows), ('retinanet', retina_rows)):
        if rows:
            write_csv(os.path.join(out_dir, f'{name}.csv'), rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    labels = [f'{r.shape.split("x", 1)[1]}\n{r.dtype} {r.direction[:3]}' for r in op_rows]
    axes[0].bar(labels, [r.copy_fraction for r in op_rows], color='tab:blue')
    axes[0].axhline(CUDA_TARGETS['copy_fraction'], color='red', ls='--', label='target')
    axes[0].set_title('achieved / copy bandwidth')
    axes[1].bar(labels, [r.vs_baseline for r in op_rows], color='tab:green')
    axes[1].axhline(CUDA_TARGETS['baseline_speedup'], color='red', ls='--', label='target')
    axes[1].set_title('speedup vs one-thread-per-output (b)')
    for ax in axes[:2]:
        ax.tick_params(axis='x', labelrotation=90, labelsize=7)
        ax.legend()
    names = [r.backbone for r in retina_rows]
    axes[2].bar([f'{n}\ntime' for n in names], [r.time_ratio for r in retina_rows],
                color='tab:orange')
    axes[2].bar([f'{n}\nmemory' for n in names], [r.memory_ratio for r in retina_rows],
                color='tab:purple')
    axes[2].axhline(CUDA_TARGETS['retina_time_ratio'], color='red', ls='--')
    axes[2].set_title('RetinaNet AMP step / ResNet-50')
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'cuda_benchmark.png'), dpi=110)
