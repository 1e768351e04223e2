"""Tables, ratios and files of the memory benchmark (:mod:`.memory`)."""
import os
from typing import List, Optional, Sequence

from rich.console import Console
from rich.table import Table

from mmrednet.utils import write_csv

from .memory import VARIANTS, Row

TARGETS = dict(vs_resnet=0.9, involution_ratio=0.6, time_ratio=1.10)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float('nan')


def summarize(rows: Sequence[Row]) -> List[dict]:
    """Per section: after/before and after/ResNet ratios and whether targets hold."""
    by = {(r.section, r.variant): r for r in rows}
    summary = []
    for section in dict.fromkeys(r.section for r in rows):
        after, before = by.get((section, 'after')), by.get((section, 'before'))
        resnet = by.get((section, 'ResNet-50'))
        cl_outputs = by.get((section, 'cl-outputs'))
        if after is None:
            continue
        item = dict(section=section)
        if before is not None:
            item.update(peak_vs_before=_ratio(after.peak_mb, before.peak_mb),
                        involution_vs_before=_ratio(after.involution_mb, before.involution_mb),
                        time_vs_before=_ratio(after.step_ms, before.step_ms))
        if after.paired_time_ratio == after.paired_time_ratio:  # not NaN
            item['paired_time_vs_before'] = after.paired_time_ratio
        if resnet is not None:
            item.update(peak_vs_resnet=_ratio(after.peak_mb, resnet.peak_mb),
                        rss_vs_resnet=_ratio(after.rss_mb, resnet.rss_mb),
                        before_peak_vs_resnet=None if before is None else _ratio(
                            before.peak_mb, resnet.peak_mb))
            if cl_outputs is not None:
                item['cl_outputs_peak_vs_resnet'] = _ratio(cl_outputs.peak_mb, resnet.peak_mb)
        summary.append(item)
    return summary


def _verdict(value: Optional[float], target: float) -> str:
    if value is None:
        return '-'
    ok = value <= target
    return f"{value:.3f} [{'green' if ok else 'red'}]({'ok' if ok else 'MISSED'})[/]"


def _plain(value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.3f}'


def print_tables(console: Console, rows: Sequence[Row], summary: Sequence[dict]) -> None:
    table = Table(title='Training step: peak memory, memory kept for backward, time')
    for col in ('model', 'variant', 'input', 'peak MB', 'RSS MB', 'kept MB', 'involution MB',
                'step ms'):
        table.add_column(col, justify='right')
    for r in rows:
        table.add_row(r.section, r.variant, r.input, f'{r.peak_mb:.1f}', f'{r.rss_mb:.1f}',
                      f'{r.kept_mb:.1f}', f'{r.involution_mb:.1f}', f'{r.step_ms:.0f}')
    console.print(table)
    table = Table(title='Ratios of RedNet-50 "after" (targets are checked on every model)')
    for col in ('model', 'peak / ResNet-50 (<= 0.9)', 'RSS / ResNet-50',
                'cl-outputs: peak / ResNet-50', 'before: peak / ResNet-50',
                'peak / before', 'involution MB / before (<= 0.6)',
                'step time / before', 'paired step time / before (<= 1.10)'):
        table.add_column(col, justify='right')
    for s in summary:
        before_vs_resnet = s.get('before_peak_vs_resnet')
        peak_vs_before = s.get('peak_vs_before')
        table.add_row(
            s['section'], _verdict(s.get('peak_vs_resnet'), TARGETS['vs_resnet']),
            _plain(s.get('rss_vs_resnet')), _plain(s.get('cl_outputs_peak_vs_resnet')),
            '-' if before_vs_resnet is None else f'{before_vs_resnet:.3f}',
            '-' if peak_vs_before is None else f'{peak_vs_before:.3f}',
            _verdict(s.get('involution_vs_before'), TARGETS['involution_ratio']),
            '-' if s.get('time_vs_before') is None else f"{s['time_vs_before']:.3f}",
            _verdict(s.get('paired_time_vs_before'), TARGETS['time_ratio']))
    console.print(table)
    console.print('involution MB: bytes the involution layers add to what autograd keeps '
                  'for backward (their input excluded); kept MB: all saved activations; '
                  'peak MB: peak allocated during one training step beyond parameters and '
                  "optimizer state; RSS MB: the process's resident memory's rise over the "
                  'first step (its peak, momentum buffers, caches); paired step '
                  'time: after and before timed alternately in one process (robust to other '
                  'load).')


def write_outputs(out_dir: str, rows: Sequence[Row], summary: Sequence[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, 'memory.csv'), rows)
    keys = sorted({k for s in summary for k in s})
    write_csv(os.path.join(out_dir, 'memory_ratios.csv'), summary,
              fieldnames=['section'] + [k for k in keys if k != 'section'])
    sections = list(dict.fromkeys(r.section for r in rows))
    by = {(r.section, r.variant): r for r in rows}
    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    variants = [v for v in VARIANTS if any(r.variant == v for r in rows)]
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(sections))]
        for ax, field in zip(axes, ('peak_mb', 'rss_mb', 'step_ms'), strict=True):
            ax.bar(xs, [getattr(by[(s, variant)], field) if (s, variant) in by else 0
                        for s in sections], width, label=f'RedNet-50 {variant}'
                   if variant != 'ResNet-50' else variant)
    for ax, title in zip(axes, ('peak training memory, allocator (MB)',
                                'peak training memory, resident (MB)', 'training step (ms)'),
                         strict=True):
        ax.set_xticks(range(len(sections)), sections)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'memory.png'), dpi=110)
