"""The CPU section's tables and files (:mod:`.op`, :mod:`.backbones`)."""
import os
from typing import List

from rich.console import Console
from rich.table import Table

from mmrednet.utils import write_csv

from .backbones import ModelRow
from .op import COPY_BYTES, TARGETS, KernelRow, OpRow


def _verdict(ok: bool) -> str:
    return '[green]ok[/green]' if ok else '[red]MISSED[/red]'


def print_cpu(console: Console, kernel_rows: List[KernelRow], op_rows: List[OpRow],
           model_rows: List[ModelRow]) -> None:
    if kernel_rows:
        table = Table(title='involution CPU kernels: time, achieved bandwidth (minimal bytes), '
                      'fraction of copy bandwidth')
        for col in ('shape', 'layout', 'kernel', 'ms', 'GB/s', 'copy GB/s', 'of copy', 'target'):
            table.add_column(col, justify='right')
        for r in kernel_rows:
            table.add_row(r.shape, r.layout, r.kernel, f'{r.ms:.2f}', f'{r.gbs:.1f}',
                          f'{r.copy_gbs:.1f}', f'{r.copy_fraction:.0%}',
                          _verdict(r.copy_fraction >= TARGETS['copy_fraction']))
        console.print(table)
        console.print(f"target: >= {TARGETS['copy_fraction']:.0%} of the copy bandwidth "
                      f'({COPY_BYTES // 2**20} MiB tensor copy, read + write, same threads); '
                      'minimal bytes: x, w (or grad_output) read once, the output written once')
    if op_rows:
        table = Table(title='involution op: forward+backward vs unfold reference')
        for col in ('shape', 'ours ms', 'reference ms', 'speedup', 'ours MB', 'reference MB',
                    'memory ratio'):
            table.add_column(col, justify='right')
        for r in op_rows:
            table.add_row(r.shape, f'{r.ours_ms:.1f}', f'{r.reference_ms:.1f}',
                          f'{r.speedup:.1f}x', f'{r.ours_mb:.1f}', f'{r.reference_mb:.1f}',
                          f'{r.memory_ratio:.3f}')
        console.print(table)
        console.print(f"target: extra peak memory / unfold <= {TARGETS['op_memory_ratio']}")
    if model_rows:
        table = Table(title='RedNet-50 vs mmdet ResNet-50 backbone (norm_eval=False for both)')
        for col in ('input', 'mode', 'RedNet-50 ms', 'ResNet-50 ms', 'ratio', 'target',
                    'ResNet-50 CL ms', 'ratio vs CL'):
            table.add_column(col, justify='right')
        for r in model_rows:
            table.add_row(r.input, r.mode, f'{r.rednet_ms:.0f}', f'{r.resnet_ms:.0f}',
                          f'{r.ratio:.2f}x', f'<= {r.target}x {_verdict(r.ratio <= r.target)}',
                          f'{r.resnet_cl_ms:.0f}', f'{r.ratio_cl:.2f}x')
        console.print(table)
        console.print('ratio: median of RedNet-50 / ResNet-50 over alternate runs; ResNet-50 CL: '
                      'the same ResNet-50 run channels-last (context, not the target)')


def write_cpu(out_dir: str, kernel_rows: List[KernelRow], op_rows: List[OpRow],
           model_rows: List[ModelRow]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    for name, rows in (('kernels', kernel_rows), ('op', op_rows), ('model', model_rows)):
        if rows:
            write_csv(os.path.join(out_dir, f'{name}.csv'), rows)
    panels = [p for p, rows in (('kernels', kernel_rows), ('op', op_rows), ('memory', op_rows),
                                ('model', model_rows)) if rows]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        if panel == 'kernels':
            for offset, layout in ((-0.2, 'channels_last'), (0.2, 'contiguous')):
                rows = [r for r in kernel_rows if r.layout == layout]
                ax.bar([i + offset for i in range(len(rows))], [r.copy_fraction for r in rows],
                       width=0.4, label=layout)
            labels = [f'{r.shape.split("x", 1)[1]}\n{r.kernel}' for r in kernel_rows
                      if r.layout == 'channels_last']
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
            ax.axhline(TARGETS['copy_fraction'], color='red', ls='--', label='target')
            ax.set_title('CPU kernels: achieved / copy bandwidth')
        elif panel == 'op':
            ax.bar([r.shape for r in op_rows], [r.speedup for r in op_rows], color='tab:blue')
            ax.set_title('op fwd+bwd speedup vs unfold')
            ax.tick_params(axis='x', labelrotation=20)
        elif panel == 'memory':
            ax.bar([r.shape for r in op_rows], [r.memory_ratio for r in op_rows],
                   color='tab:green')
            ax.axhline(TARGETS['op_memory_ratio'], color='red', ls='--', label='target')
            ax.set_title('op extra peak memory / unfold')
            ax.tick_params(axis='x', labelrotation=20)
        else:
            labels = [f'{r.input}\n{r.mode}' for r in model_rows]
            ax.bar(labels, [r.ratio for r in model_rows], color='tab:orange',
                   label='vs ResNet-50')
            ax.plot(labels, [r.ratio_cl for r in model_rows], 'o', color='black',
                    label='vs ResNet-50 channels-last')
            ax.axhline(1.0, color='red', ls='--', label='target')
            ax.set_title('RedNet-50 time / ResNet-50 time')
            ax.tick_params(axis='x', labelsize=7)
        if panel != 'op':
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'benchmark.png'), dpi=110)
