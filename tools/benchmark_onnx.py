"""onnxruntime CPU latency of RedNet-50 against ResNet-50, exported the same way, in one run.

Sections (all at batch 1, onnxruntime with ``--threads`` intra-op threads and
PyTorch eager with as many threads, random weights):

- ``op``: one RedNet-50 stage's 7x7 involution layer (16 channels a group) in
  ONNX, as ``mmrednet.deployment.involution_onnx`` writes it (one strided
  ``Slice`` per tap + ``Mul`` + ``Add``) against a ``Pad`` + ``Gather``
  (im2col-like) form, with PyTorch eager beside them: the measurement that
  chose the first form.
- ``classifier``: RedNet-50 (``mmrednet.RedNet`` depth 50, 3x3 stem involution)
  + global pooling + linear head against mmpretrain's ResNet-50 classifier, 224x224.
- ``retinanet``: ``configs/rednet/retinanet_rednet50_fpn_1x_coco.py`` against
  mmdet's ``retinanet_r50_fpn_1x_coco``, 800x1333 padded to 800x1344 as mmdet's
  preprocessor does (tensor outputs; no NMS).

Every case is exported with ``tools/deployment/export_onnx.py``'s code path
(the same graph wrappers, translation and folding), checked against PyTorch,
and timed in rounds that visit every case once (a busy machine slows all
alike). Prints tables; with ``--out-dir`` writes ``onnx_benchmark.csv`` and
``onnx_benchmark.png``.

Example::

    python tools/benchmark_onnx.py --out-dir work_dirs/benchmark_onnx
"""
import argparse
import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from onnxscript import opset18 as op
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from torch import nn

from mmrednet.deployment import OnnxRuntimeGraph, graphs
from mmrednet.deployment.exporter import to_onnx
from mmrednet.deployment.involution_onnx import grouped_padded_input
from mmrednet.deployment.metadata import GraphMetadata
from mmrednet.deployment.rewrites import export_friendly
from mmrednet.models import Involution
from mmrednet.utils import model_config, write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# RedNet-50 stages: (channels of the involution, feature size at 224x224).
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]


@dataclass
class Row:
    section: str
    case: str
    backend: str
    median_ms: float
    min_ms: float
    max_abs_diff: float  # onnxruntime against PyTorch on the timed input (0 for PyTorch)


def gather_form(input, weight, stride, padding, dilation):
    """The baseline translation: index the padded input with two ``Gather`` ops into
    ``(N, G, C/G, K, Ho, K, Wo)``, multiply by the kernel and ``ReduceSum`` the taps."""
    groups, kh, kw = weight.shape[1], weight.shape[2], weight.shape[3]
    padded = grouped_padded_input(input, groups, padding)

    def taps(k: int, d: int, s: int, axis: int):  # (K, out) indices u*d + i*s
        size = op.Squeeze(op.Shape(weight, start=axis, end=axis + 1), op.Constant(value_ints=[0]))
        one, zero = op.Constant(value_int=1), op.Constant(value_int=0)
        offsets = op.Mul(op.Range(zero, op.Constant(value_int=k), one), op.Constant(value_int=d))
        steps = op.Mul(op.Range(zero, size, one), op.Constant(value_int=s))
        return op.Add(op.Unsqueeze(offsets, op.Constant(value_ints=[1])),
                      op.Unsqueeze(steps, op.Constant(value_ints=[0])))

    cols = op.Gather(padded, taps(kh, dilation[0], stride[0], 4), axis=3)
    cols = op.Gather(cols, taps(kw, dilation[1], stride[1], 5), axis=5)
    kernel = op.Unsqueeze(op.Transpose(weight, perm=[0, 1, 2, 4, 3, 5]),
                          op.Constant(value_ints=[2]))
    out = op.ReduceSum(op.Mul(cols, kernel), op.Constant(value_ints=[3, 5]), keepdims=0)
    shape = op.Concat(op.Shape(input, start=0, end=2), op.Shape(weight, start=4), axis=0)
    return op.Reshape(out, shape)


class Case:
    """One thing to time: a PyTorch module and an input (and a graph to run it in)."""

    def __init__(self, section: str, name: str, backend: str, run: Callable[[], object],
                 diff: float = 0.0) -> None:
        self.section, self.name, self.backend, self.run, self.diff = (section, name, backend,
                                                                      run, diff)
        self.times: List[float] = []


def _onnx_case(section: str, name: str, module: nn.Module, x: torch.Tensor, threads: int,
               backend: str = 'onnxruntime', translation: dict = None) -> Case:
    """Export ``module`` (a graph wrapper) at ``x``'s shape and check it against PyTorch."""
    with torch.no_grad():
        expected = graphs.as_groups(module(x))
    count = sum(len(group) for group in expected)
    proto = to_onnx(module, (x, ), ['input'], [f'out{i}' for i in range(count)],
                    translation_table=translation)
    GraphMetadata(section, name, 'main', [('out', count)]).write(proto)
    graph = OnnxRuntimeGraph(proto.SerializeToString(), num_threads=threads)
    [got] = graph(x)
    diff = max((a - b).abs().max().item() for a, b in
               zip(got, [t for group in expected for t in group], strict=True))
    return Case(section, name, backend, lambda: graph(x), diff)


def _eager_case(section: str, name: str, module: nn.Module, x: torch.Tensor) -> Case:
    def run():
        with torch.no_grad():
            return module(x)
    return Case(section, name, 'pytorch', run)


class _Layer(nn.Module):
    """A bare layer as a graph (one output group)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def op_cases(threads: int) -> List[Case]:
    cases, gather = [], {torch.ops.mmrednet.involution.default: gather_form}
    for channels, size in STAGES:
        layer = _Layer(Involution(channels, kernel_size=7, group_channels=16).eval())
        x = torch.randn(1, channels, size, size)
        name = f'{channels} ch, {size}x{size}'
        cases.append(_onnx_case('op', name, layer, x, threads, 'onnxruntime slice per tap'))
        cases.append(_onnx_case('op', name, layer, x, threads, 'onnxruntime pad + gather',
                                translation=gather))
        cases.append(_eager_case('op', name, layer, x))
    return cases


def _build(cfg: Config) -> nn.Module:
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return revert_sync_batchnorm(MODELS.build(model_config(cfg))).eval()  # random weights


def rednet50_classifier_cfg() -> Config:
    """RedNet-50 for ImageNet as a config dict (the ImageNet recipe's model: 3x3 stem)."""
    return Config(dict(default_scope='mmpretrain', model=dict(
        type='ImageClassifier',
        backbone=dict(type='mmrednet.RedNet', depth=50, stem_kernel=3, out_indices=(3, )),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048,
                  loss=dict(type='CrossEntropyLoss'), topk=(1, 5)))))


def model_cases(section: str, configs: Dict[str, Config], kind: str, shape, threads: int
                ) -> List[Case]:
    cases = []
    for name, cfg in configs.items():
        model = _build(cfg)
        x = torch.randn(1, 3, *shape)
        cases.append(_onnx_case(section, name, graphs.image_graph(export_friendly(model), kind),
                                x, threads))
        cases.append(_eager_case(section, name, graphs.image_graph(model, kind), x))
    return cases


def run_rounds(cases: List[Case], rounds: int, console: Console) -> None:
    """Warm every case up, then time each once per round (interleaved)."""
    with Progress(console=console) as progress:
        task = progress.add_task('timing', total=rounds + 1)
        for case in cases:
            case.run()
        progress.advance(task)
        for _ in range(rounds):
            for case in cases:
                start = time.perf_counter()
                case.run()
                case.times.append(time.perf_counter() - start)
            progress.advance(task)


def rows_of(cases: List[Case]) -> List[Row]:
    return [Row(c.section, c.name, c.backend, 1e3 * statistics.median(c.times),
                1e3 * min(c.times), c.diff) for c in cases]


def print_rows(console: Console, rows: List[Row], threads: int) -> None:
    for section in dict.fromkeys(r.section for r in rows):
        table = Table(title=f'{section}: batch 1, {threads} threads, median (min) ms')
        table.add_column('case')
        backends = list(dict.fromkeys(r.backend for r in rows if r.section == section))
        for backend in backends:
            table.add_column(backend, justify='right')
        for case in dict.fromkeys(r.case for r in rows if r.section == section):
            cells = {r.backend: r for r in rows if r.section == section and r.case == case}
            table.add_row(case, *(f'{cells[b].median_ms:.1f} ({cells[b].min_ms:.1f})'
                                  for b in backends))
        console.print(table)
        section_rows = [r for r in rows if r.section == section]
        diff = max(r.max_abs_diff for r in section_rows)
        console.print(f'largest |onnxruntime - pytorch| in {section}: {diff:.2g}')
        if section != 'op':  # RedNet-50 / ResNet-50 per backend
            for backend in backends:
                rednet, resnet = (next(r for r in section_rows
                                       if r.backend == backend and r.case.startswith(m))
                                  for m in ('RedNet', 'ResNet'))
                console.print(f'  {backend}: RedNet-50 / ResNet-50 = '
                              f'{rednet.median_ms / resnet.median_ms:.2f}x (medians), '
                              f'{rednet.min_ms / resnet.min_ms:.2f}x (minima)')


def write(out_dir: str, rows: List[Row]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, 'onnx_benchmark.csv'), rows)
    sections = list(dict.fromkeys(r.section for r in rows))
    fig, axes = plt.subplots(1, len(sections), figsize=(5.5 * len(sections), 4.2), squeeze=False)
    for ax, section in zip(axes[0], sections, strict=True):
        section_rows = [r for r in rows if r.section == section]
        cases = list(dict.fromkeys(r.case for r in section_rows))
        backends = list(dict.fromkeys(r.backend for r in section_rows))
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            picked = [next(r for r in section_rows if r.case == c and r.backend == backend)
                      for c in cases]
            x = np.arange(len(cases)) + i * width
            ax.bar(x, [r.median_ms for r in picked], width, label=backend)
            ax.scatter(x, [r.min_ms for r in picked], marker='_', s=300, color='black',
                       zorder=3, label='minimum' if i == 0 else None)
        ax.set_xticks(np.arange(len(cases)) + width * (len(backends) - 1) / 2, cases,
                      fontsize=8)
        ax.set_ylabel('ms (bars: median)')
        ax.set_title(section)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'onnx_benchmark.png'), dpi=110)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sections', nargs='+', default=['op', 'classifier', 'retinanet'],
                        choices=['op', 'classifier', 'retinanet'])
    parser.add_argument('--threads', type=int, default=2,
                        help='onnxruntime intra-op threads and torch threads')
    parser.add_argument('--rounds', type=int, default=10, help='timed runs of every case')
    parser.add_argument('--out-dir', help='write onnx_benchmark.csv and onnx_benchmark.png')
    return parser.parse_args(argv)


def main(argv=None) -> List[Row]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    console = Console()
    cases = []
    console.print('exporting and checking ...')
    if 'op' in args.sections:
        cases += op_cases(args.threads)
    if 'classifier' in args.sections:
        cases += model_cases('classifier', {
            'RedNet-50': rednet50_classifier_cfg(),
            'ResNet-50 (mmpretrain)': get_config('mmpretrain::resnet/resnet50_8xb32_in1k.py'),
        }, graphs.CLASSIFIER, (224, 224), args.threads)
    if 'retinanet' in args.sections:
        rednet = os.path.join(ROOT, 'configs', 'rednet', 'retinanet_rednet50_fpn_1x_coco.py')
        cases += model_cases('retinanet', {
            'RedNet-50 RetinaNet': Config.fromfile(rednet),
            'ResNet-50 RetinaNet (mmdet)': get_config('mmdet::retinanet/'
                                                      'retinanet_r50_fpn_1x_coco.py'),
        }, graphs.DETECTOR, (800, 1344), args.threads)
    run_rounds(cases, args.rounds, console)
    rows = rows_of(cases)
    print_rows(console, rows, args.threads)
    if args.out_dir:
        write(args.out_dir, rows)
        console.print(f'wrote {args.out_dir}/onnx_benchmark.csv, onnx_benchmark.png')
    return rows


if __name__ == '__main__':
    main()
