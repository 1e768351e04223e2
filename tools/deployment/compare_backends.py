"""Evaluate a checkpoint in PyTorch and its ONNX export in onnxruntime (or its AOTInductor
package, ``--backend aoti``); compare the metrics.

One command for "the exported model is as accurate as the PyTorch one": it
exports CONFIG + CHECKPOINT with dynamic shapes (tools/deployment/export_onnx.py),
runs tools/test.py on the config's test set with both backends (separate
processes, same dataset, evaluator and post-processing) and prints every
metric side by side. It exits non-zero when a metric differs by more than
``--max-diff`` (on the 0-1 scale; metrics that mmseg/mmpretrain report in
percent are compared at 100x).

Examples:
    python tools/deployment/compare_backends.py CONFIG CHECKPOINT --work-dir work_dirs/compare
    bash tools/deployment/compare_demos.sh     # the three CPU demos
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmengine.config import Config
from rich.console import Console
from rich.table import Table

from mmrednet.deployment import BACKENDS

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PERCENT_SCOPES = ('mmseg', 'mmpretrain')  # their metrics are in percent, mmdet's in 0-1


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Compare PyTorch and onnxruntime metrics of '
                                     'a checkpoint on its config\'s test set')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', default='work_dirs/compare_backends',
                        help='where the .onnx and both test runs go')
    parser.add_argument('--max-diff', type=float, default=0.002,
                        help='largest allowed metric difference on the 0-1 scale')
    parser.add_argument('--tta', action='store_true', help='pass --tta to both test runs')
    parser.add_argument('--backend', choices=list(BACKENDS), default='onnxruntime',
                        help='the deployed backend: ONNX in onnxruntime, or a .pt2 package')
    return parser.parse_args(argv)


def _run(command, log_file: str) -> float:
    """Run ``command`` (output to ``log_file``); its wall time in seconds."""
    start = time.perf_counter()
    with open(log_file, 'w') as log:
        path = os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH')) if p)
        done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=path), check=False)
    if done.returncode:
        sys.exit(f'failed (exit {done.returncode}): {" ".join(command)}; see {log_file}')
    return time.perf_counter() - start


def _metrics(work_dir: str) -> dict:
    """The metrics the Runner's logger wrote after testing (``<timestamp>/<timestamp>.json``)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not logs:
        sys.exit(f'no metrics in {work_dir}')
    with open(logs[-1]) as f:
        metrics = json.load(f)
    return {k: v for k, v in metrics.items() if k not in ('data_time', 'time', 'step')}


def main(argv=None) -> dict:
    args = parse_args(argv)
    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    backend = BACKENDS[args.backend]
    exported = osp.join(work_dir, backend.example)
    console = Console()
    py, tools = sys.executable, osp.join(ROOT, 'tools')
    extra = ['--tta'] if args.tta else []

    console.print(f'exporting {args.config} -> {exported}')
    _run([py, osp.join(tools, 'deployment', backend.exporter), args.config, args.checkpoint,
          '--out', exported, '--dynamic'], osp.join(work_dir, 'export.log'))
    runs = {
        'pytorch': [args.checkpoint],
        args.backend: ['--backend', args.backend, f'--{backend.option}', exported],
    }
    results, seconds = {}, {}
    for name, backend_args in runs.items():
        out = osp.join(work_dir, name)
        console.print(f'testing with {name} ...')
        seconds[name] = _run([py, osp.join(tools, 'test.py'), args.config, *backend_args,
                              '--work-dir', out, *extra], osp.join(work_dir, f'{name}.log'))
        results[name] = _metrics(out)

    scale = 100 if Config.fromfile(args.config).get('default_scope') in PERCENT_SCOPES else 1
    table = Table(title=f'{osp.basename(args.config)}: PyTorch vs {args.backend}')
    for column in ('metric', 'pytorch', args.backend, 'difference'):
        table.add_column(column, justify='left' if column == 'metric' else 'right')
    worst = 0.0
    for name, value in results['pytorch'].items():
        other = results[args.backend].get(name)
        if not isinstance(value, (int, float)) or not isinstance(other, (int, float)):
            continue
        worst = max(worst, abs(other - value) / scale)
        table.add_row(name, f'{value:g}', f'{other:g}', f'{other - value:+.4g}')
    table.add_row('test wall time (s)', f'{seconds["pytorch"]:.1f}',
                  f'{seconds[args.backend]:.1f}', '')
    console.print(table)
    verdict = 'within' if worst <= args.max_diff else 'MORE than'
    console.print(f'largest metric difference {worst:.4g} (0-1 scale): {verdict} '
                  f'{args.max_diff:g}')
    if worst > args.max_diff:
        sys.exit(1)
    return results


if __name__ == '__main__':
    main()
