"""The CPU section's tables and files (:mod:`.op`, :mod:`.backbones`, :mod:`.layout`)."""
import os
from typing import List

from rich.console import Console
from rich.table import Table

from mmrednet.utils import write_csv

from .backbones import ModelRow
from .layout import LayoutRow
from .op import COPY_BYTES, TARGETS, KernelRow, OpRow


def _verdict(ok: bool) -> str:
    return '[green]ok[/green]' if ok else '[red]MISSED[/red]'


def print_cpu(console: Console, kernel_rows: List[KernelRow], op_rows: List[OpRow],
              model_rows: List[ModelRow], layout_rows: List[LayoutRow]) -> None:
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
                    'ResNet-50 CL ms', 'ratio vs CL', 'RedNet-50 CL outputs ms',
                    'CL / NCHW outputs'):
            table.add_column(col, justify='right')
        for r in model_rows:
            table.add_row(r.input, r.mode, f'{r.rednet_ms:.0f}', f'{r.resnet_ms:.0f}',
                          f'{r.ratio:.2f}x', f'<= {r.target}x {_verdict(r.ratio <= r.target)}',
                          f'{r.resnet_cl_ms:.0f}', f'{r.ratio_cl:.2f}x',
                          f'{r.rednet_cl_out_ms:.0f}', f'{r.cl_out_vs_nchw_out:.2f}x')
        console.print(table)
        console.print('ratio: median of RedNet-50 / ResNet-50 over alternate runs; ResNet-50 CL: '
                      'the same ResNet-50 run channels-last; CL / NCHW outputs: RedNet-50 '
                      'returning channels-last maps against its default NCHW ones (context, '
                      'not the target)')
    if layout_rows:
        table = Table(title='Layout work per run (torch.profiler; counts exact, times as the '
                      'profiled run took them)')
        for col in ('model', 'mode', 'input', 'layout conversions', 'aten::copy_',
                    'copied M elements', 'copy ms', 'oneDNN convs', 'slow convs',
                    'slow conv ms'):
            table.add_column(col, justify='right')
        for r in layout_rows:
            table.add_row(r.model, r.mode, r.input, str(r.conversions), str(r.copies),
                          f'{r.copied_melems:.1f}', f'{r.copy_ms:.1f}', str(r.onednn_convs),
                          str(r.slow_convs), f'{r.slow_conv_ms:.1f}')
        console.print(table)
        console.print("layout conversions: RedNet's to_memory_format, forward and backward; "
                      "slow convs: forward convolutions on torch's im2col + GEMM fallback "
                      'instead of oneDNN')


def write_cpu(out_dir: str, kernel_rows: List[KernelRow], op_rows: List[OpRow],
              model_rows: List[ModelRow], layout_rows: List[LayoutRow]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    for name, rows in (('kernels', kernel_rows), ('op', op_rows), ('model', model_rows),
                       ('layout', layout_rows)):
        if rows:
            write_csv(os.path.join(out_dir, f'{name}.csv'), rows)
    panels = [p for p, rows in (('kernels', kernel_rows), ('op', op_rows), ('memory', op_rows),
                                ('model', model_rows), ('layout', layout_rows)) if rows]
    if not panels:
        return
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
        elif panel == 'model':
            labels = [f'{r.input}\n{r.mode}' for r in model_rows]
            ax.bar(labels, [r.ratio for r in model_rows], color='tab:orange',
                   label='vs ResNet-50')
            ax.plot(labels, [r.ratio_cl for r in model_rows], 'o', color='black',
                    label='vs ResNet-50 channels-last')
            ax.plot(labels, [r.target for r in model_rows], '_', color='red', markersize=30,
                    label='target')
            ax.set_title('RedNet-50 time / ResNet-50 time')
            ax.tick_params(axis='x', labelsize=7)
        else:
            models = list(dict.fromkeys(r.model for r in layout_rows))
            modes = list(dict.fromkeys(r.mode for r in layout_rows))
            width = 0.8 / len(models)
            by = {(r.model, r.mode): r for r in layout_rows}
            for i, model in enumerate(models):
                ax.bar([j + (i - (len(models) - 1) / 2) * width for j in range(len(modes))],
                       [by[(model, mode)].copied_melems if (model, mode) in by else 0
                        for mode in modes], width, label=model)
            ax.set_xticks(range(len(modes)),
                          [f'{m}\n{next(r.input for r in layout_rows if r.mode == m)}'
                           for m in modes])
            ax.set_title('elements copied per run (aten::copy_, millions)')
        if panel != 'op':
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'benchmark.png'), dpi=110)
