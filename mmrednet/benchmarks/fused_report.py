"""The fused op benchmark's table and files (:mod:`.fused`)."""
import os
from typing import List

from rich.console import Console
from rich.table import Table

from mmrednet.utils import write_csv

from .fused import TARGET, FusedRow


def print_fused(console: Console, rows: List[FusedRow]) -> None:
    """One line per shape, layout and pass: times, the paired ratio and the verdict."""
    breakdown = any(r.parts for r in rows)
    table = Table(title='fused involution vs span conv + involution op (CPU)')
    columns = ['input', 'shape', 'layout', 'pass', 'composed ms', 'fused ms', 'ratio', 'target']
    for col in columns + (['parts (ms)'] if breakdown else []):
        table.add_column(col, justify='left' if col == 'parts (ms)' else 'right')
    for r in rows:
        verdict = '[green]ok[/green]' if r.ratio >= TARGET else '[red]MISSED[/red]'
        cells = [r.input, r.shape, r.layout, r.pass_, f'{r.composed_ms:.2f}',
                 f'{r.fused_ms:.2f}', f'{r.ratio:.2f}x', f'>= {TARGET}x {verdict}']
        table.add_row(*cells, *([r.parts if r.pass_ == 'forward' else ''] if breakdown else []))
    console.print(table)
    console.print('ratio: median over rounds of composed / fused, each round timing every call '
                  'once, interleaved, in reversed order every other round')


def write_fused(out_dir: str, rows: List[FusedRow]) -> None:
    """``fused.csv`` and ``fused.png`` (the ratios per shape, forward and backward)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, 'fused.csv'), rows)
    layouts = sorted({r.layout for r in rows})
    fig, axes = plt.subplots(1, len(layouts), figsize=(6 * len(layouts), 4.2), squeeze=False)
    for ax, layout in zip(axes[0], layouts, strict=True):
        mine = [r for r in rows if r.layout == layout]
        labels = list(dict.fromkeys(f'{r.input}\n{r.shape}' for r in mine))
        for offset, pass_ in ((-0.2, 'forward'), (0.2, 'backward')):
            ratios = {f'{r.input}\n{r.shape}': r.ratio for r in mine if r.pass_ == pass_}
            ax.bar([i + offset for i in range(len(labels))], [ratios[k] for k in labels],
                   width=0.4, label=pass_)
        ax.axhline(TARGET, color='red', ls='--', label='target')
        ax.axhline(1.0, color='gray', lw=0.8)
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_title(f'composed time / fused time, {layout}')
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'fused.png'), dpi=110)
