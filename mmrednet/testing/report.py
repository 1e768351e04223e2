"""Pass/fail reports of the CUDA checks: a rich table, a JSON file and a PNG.

``tools/check_cuda.py`` (on a GPU) and ``tools/cuda_emulation.py`` (on the
host) report through these, so a GPU user's report reads like CI's.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..utils.atomic_write import atomic_write
from .sweep import OPS, Outcome

STATUSES = ('pass', 'fail', 'skip', 'info')  # only 'fail' fails a run
_STYLE = {'pass': 'green', 'fail': 'bold red', 'skip': 'yellow', 'info': 'cyan'}


@dataclass
class Check:
    """One line of the report. ``data`` goes to the JSON file only."""
    name: str
    status: str
    detail: str = ''
    seconds: float = 0.0
    data: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f'status must be one of {STATUSES}, got {self.status!r}')


def exit_code(checks: Sequence[Check]) -> int:
    """0 when no check failed, else 1."""
    return int(any(c.status == 'fail' for c in checks))


def sweep_checks(name: str, outcomes: Sequence[Outcome], seconds: float = 0.0) -> List[Check]:
    """One check per dtype of a sweep: passes when every launch is within its bound."""
    checks = []
    for dtype in dict.fromkeys(o.dtype for o in outcomes):
        mine = [o for o in outcomes if o.dtype == dtype]
        failed = [o for o in mine if not o.passed]
        worst = max(o.worst for o in mine)
        detail = (f'{len(mine)} launches, worst error {worst:.3g} of the bound'
                  + (f'; {len(failed)} FAILED, first: {failed[0].case} {failed[0].op} '
                     f'({failed[0].kernel}): {failed[0].worst:.3g} of the bound, '
                     f'{failed[0].unwritten} unwritten' if failed else ''))
        checks.append(Check(f'{name} {dtype}', 'fail' if failed else 'pass', detail,
                            seconds / max(1, len(set(o.dtype for o in outcomes))),
                            dict(launches=len(mine), worst=worst,
                                 failures=[o.as_dict() for o in failed[:50]])))
    return checks


def print_checks(console, title: str, checks: Sequence[Check]) -> None:
    from rich.table import Table
    table = Table(title=title)
    for column in ('check', 'result', 'seconds', 'detail'):
        table.add_column(column, justify='right' if column == 'seconds' else 'left')
    for c in checks:
        table.add_row(c.name, f'[{_STYLE[c.status]}]{c.status.upper()}[/]', f'{c.seconds:.1f}',
                      c.detail)
    console.print(table)
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    console.print(', '.join(f'{n} {s}' for s, n in counts.items() if n))


def write_json(path: Path, checks: Sequence[Check], **extra) -> None:
    payload = dict(exit_code=exit_code(checks), checks=[asdict(c) for c in checks], **extra)
    atomic_write(str(path), lambda f: f.write(json.dumps(payload, indent=1, default=str).encode()))


def write_png(path: Path, checks: Sequence[Check], outcomes: Sequence[Outcome] = (),
              panels: Optional[Dict[str, Dict[str, float]]] = None) -> None:
    """Check results, the sweep's worst error per dtype and op, and extra bar ``panels``
    (title -> {label: value})."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    panels = panels or {}
    count = 1 + bool(outcomes) + len(panels)
    fig, axes = plt.subplots(1, count, figsize=(6 * count, 4.5), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    colors = {'pass': 'tab:green', 'fail': 'tab:red', 'skip': 'tab:olive', 'info': 'tab:blue'}
    ax.barh(range(len(checks)), [1] * len(checks), color=[colors[c.status] for c in checks])
    ax.set_yticks(range(len(checks)), [f'{c.name}: {c.status}' for c in checks], fontsize=7)
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_title(f'checks: {sum(c.status == "fail" for c in checks)} failed')
    if outcomes:
        ax = axes.pop(0)
        dtypes = list(dict.fromkeys(o.dtype for o in outcomes))
        width = 0.8 / len(OPS)
        for k, op in enumerate(OPS):
            worst = [max((o.worst for o in outcomes if o.dtype == d and o.op == op), default=0)
                     for d in dtypes]
            ax.bar([i + k * width for i in range(len(dtypes))],
                   [max(w, 1e-6) for w in worst], width, label=op)
        ax.axhline(1.0, color='red', ls='--', label='bound')
        ax.set_yscale('log')
        ax.set_xticks([i + width for i in range(len(dtypes))], dtypes)
        ax.set_title(f'sweep: worst error / bound ({len(outcomes)} launches)')
        ax.legend(fontsize=7)
    for title, values in panels.items():
        ax = axes.pop(0)
        finite = {k: v for k, v in values.items() if not math.isnan(v)}
        ax.bar(list(finite), list(finite.values()), color='tab:purple')
        ax.set_title(title)
        ax.tick_params(axis='x', labelrotation=60, labelsize=7)
    fig.tight_layout()
    atomic_write(str(path), lambda f: fig.savefig(f, format='png', dpi=110))
    plt.close(fig)
