"""Deployed CPU latency of RedNet-50 against ResNet-50 in one run: PyTorch eager,
AOTInductor packages (``.pt2``, loaded in Python and by the C++ runner) and ONNX in onnxruntime.

The logic of ``tools/benchmark_deploy.py``. Sections (all at batch 1, ``threads``
threads everywhere, random weights):

- ``op``: one RedNet-50 stage's 7x7 involution layer (16 channels a group) in
  ONNX, as ``mmrednet.deployment.onnx.translation`` writes it (one strided
  ``Slice`` per tap + ``Mul`` + ``Add``) against a ``Pad`` + ``Gather``
  (im2col-like) form, with PyTorch eager beside them: the measurement that
  chose the first form.
- ``classifier``: RedNet-50 (``mmrednet.RedNet`` depth 50, 3x3 stem involution)
  + global pooling + linear head against mmpretrain's ResNet-50 classifier, 224x224.
- ``retinanet``: ``configs/rednet/retinanet_rednet50_fpn_1x_coco.py`` (the tool
  passes its path) against
  mmdet's ``retinanet_r50_fpn_1x_coco``, 800x1333 padded to 800x1344 as mmdet's
  preprocessor does (tensor outputs; no NMS).

Every model is deployed with the exporters' code paths (the same graph
wrappers; ONNX with its translation and folding, ``.pt2`` with
``torch.export`` + AOTInductor and frozen weights), checked against PyTorch,
and timed in rounds that visit every case once, in the opposite order every
other round (a busy machine slows all alike). Ratios are medians of the
per-round ratios of the two cases, each with the figure RedNet-50 is held to.
A model whose package calls the fused involution op is also packaged with
that op as its composition (``.pt2 (composed)``: the span convolution writes
the kernel, the involution op reads it; ``rewrites.composed``), so the run
shows what the fused op saves a deployed model. The C++ runner (its sources: the tool
passes ``tools/deployment/cpp``) is built into ``runner_dir`` when the op
library it loads is there; it times its own runs (``--serve``).

``run`` prints tables and, with ``out_dir``, writes ``deploy_benchmark.csv``,
``deploy_ratios.csv`` (with a model section) and ``deploy_benchmark.png``.
"""
import contextlib
import os
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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

from mmrednet.deployment import GraphMetadata, OnnxRuntimeGraph, graphs, load_package
from mmrednet.deployment.aoti.export import temporary_package
from mmrednet.deployment.aoti.package import PackageInfo
from mmrednet.deployment.aoti.runner import (
    ServedPackage,
    build_runner,
    run_package,
    runner_op_library,
)
from mmrednet.deployment.onnx.export import to_onnx, write_metadata
from mmrednet.deployment.onnx.translation import custom_translation_table, grouped_padded_input
from mmrednet.deployment.rewrites import export_friendly
from mmrednet.models import Involution
from mmrednet.utils import model_config, write_csv

# RedNet-50 stages: (channels of the involution, feature size at 224x224).
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]
EAGER, ORT, PT2, PT2_CPP = 'pytorch eager', 'onnxruntime', '.pt2 (Python)', '.pt2 (C++)'
PT2_COMPOSED = '.pt2 (composed)'
FUSED_OP = 'mmrednet::involution_fused'


@dataclass
class Row:
    section: str
    case: str
    backend: str
    median_ms: float
    min_ms: float
    max_abs_diff: float  # the backend against PyTorch eager on the timed input (0 for eager)


@dataclass
class Ratio:
    section: str
    ratio: str
    median: float  # of the per-round ratios
    min: float
    max: float
    target: str


def gather_form(input, weight, kernel_shape, stride, padding, dilation):
    """The baseline involution form (``translation.InvolutionForm``): index the padded
    input with two ``Gather`` ops into ``(N, G, C/G, K, Ho, K, Wo)``, multiply by the
    kernel ``weight`` ``(N, G, Kh, Kw, Ho, Wo)`` and ``ReduceSum`` the taps."""
    groups, kh, kw = kernel_shape
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
    """One thing to time: a PyTorch module and an input (and a graph to run it in).

    ``self_timed``: ``run`` returns its own time in seconds (the C++ runner's).
    """

    def __init__(self, section: str, name: str, backend: str, run: Callable[[], object],
                 diff: float = 0.0, self_timed: bool = False) -> None:
        self.section, self.name, self.backend, self.run, self.diff = (section, name, backend,
                                                                      run, diff)
        self.self_timed = self_timed
        self.times: List[float] = []

    def time(self) -> float:
        start = time.perf_counter()
        result = self.run()
        return result if self.self_timed else time.perf_counter() - start


def _flat(outputs) -> List[torch.Tensor]:
    return [t for group in graphs.as_groups(outputs) for t in group]


def _max_diff(got: List[torch.Tensor], expected: List[torch.Tensor]) -> float:
    return max((a - b).abs().max().item() for a, b in zip(got, expected, strict=True))


@dataclass
class Runner:
    """The C++ runner and the op library it loads; ``work_dir`` for packages and tensors;
    ``processes`` closes the runner processes it serves packages in, whatever happens."""
    executable: str
    op_library: str
    work_dir: str
    threads: int
    processes: contextlib.ExitStack


def _onnx_case(section: str, name: str, module: nn.Module, x: torch.Tensor, threads: int,
               backend: str = 'onnxruntime', translation: dict = None) -> Case:
    """Export ``module`` (a graph wrapper) at ``x``'s shape and check it against PyTorch."""
    with torch.no_grad():
        expected = _flat(module(x))
    count = len(expected)
    proto = to_onnx(module, (x, ), ['input'], [f'out{i}' for i in range(count)],
                    translation_table=translation)
    write_metadata(GraphMetadata(section, name, 'main', [('out', count)]), proto)
    graph = OnnxRuntimeGraph(proto.SerializeToString(), num_threads=threads)
    return Case(section, name, backend, lambda: graph(x), _max_diff(_flat(graph(x)), expected))


def _eager_case(section: str, name: str, module: nn.Module, x: torch.Tensor) -> Case:
    def run():
        with torch.no_grad():
            return module(x)
    return Case(section, name, EAGER, run)


def _pt2_case(section: str, name: str, backend: str, path: str, x: torch.Tensor,
              expected: List[torch.Tensor]) -> Case:
    graph = load_package(path)['main']
    return Case(section, name, backend, lambda: graph(x), _max_diff(_flat(graph(x)), expected))


def _aoti_cases(section: str, name: str, module: nn.Module, x: torch.Tensor, work_dir: str,
                runner: Optional[Runner], composed: bool = False) -> List[Case]:
    """``module`` (a graph wrapper) as a ``.pt2`` at ``x``'s shape, loaded in Python and,
    with ``runner``, by the C++ runner; with ``composed``, when the package calls the
    fused op, also that package with the op as its composition; all checked against
    PyTorch."""
    with torch.no_grad():
        expected = _flat(module(x))
    stem = re.sub(r'\W+', '_', f'{section}_{name}')
    path = temporary_package(module, x, work_dir, stem)
    cases = [_pt2_case(section, name, PT2, path, x, expected)]
    if composed and FUSED_OP in PackageInfo.read(path).ops:
        cases.append(_pt2_case(section, name, PT2_COMPOSED, temporary_package(
            module, x, work_dir, f'{stem}_composed', compose_fused=True), x, expected))
    if runner is not None:
        got = run_package(runner.executable, runner.op_library, path, x, runner.work_dir,
                          threads=runner.threads)
        served = runner.processes.enter_context(ServedPackage(
            runner.executable, runner.op_library, path, x, runner.work_dir, runner.threads))
        cases.append(Case(section, name, PT2_CPP, served, _max_diff(got, expected),
                          self_timed=True))
    return cases


class _Layer(nn.Module):
    """A bare layer as a graph (one output group)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def op_cases(threads: int) -> List[Case]:
    cases, gather = [], custom_translation_table(gather_form)
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


def model_cases(section: str, configs: Dict[str, Config], kind: str, shape, threads: int,
                backends: List[str], work_dir: str, runner: Optional[Runner]) -> List[Case]:
    cases = []
    for name, cfg in configs.items():
        model = _build(cfg)
        x = torch.randn(1, 3, *shape)
        friendly = graphs.image_graph(export_friendly(model), kind)
        if ORT in backends:
            cases.append(_onnx_case(section, name, friendly, x, threads))
        if PT2 in backends:
            cases += _aoti_cases(section, name, friendly, x, work_dir,
                                 runner if PT2_CPP in backends else None,
                                 PT2_COMPOSED in backends)
        cases.append(_eager_case(section, name, graphs.image_graph(model, kind), x))
    return cases


def run_rounds(cases: List[Case], rounds: int, console: Console) -> None:
    """Warm every case up, then time each once per round, interleaved, in the
    opposite order every other round (no case always follows the same one)."""
    with Progress(console=console) as progress:
        task = progress.add_task('timing', total=rounds + 1)
        for case in cases:
            case.run()
        progress.advance(task)
        for index in range(rounds):
            for case in (cases if index % 2 == 0 else cases[::-1]):
                case.times.append(case.time())
            progress.advance(task)


def rows_of(cases: List[Case]) -> List[Row]:
    return [Row(c.section, c.name, c.backend, 1e3 * statistics.median(c.times),
                1e3 * min(c.times), c.diff) for c in cases]


# (label, numerator (model, backend), denominator, target by section), for each model
# section; the .pt2 targets are the ones RedNet-50 is held to (the classifier at 0.8x
# ResNet-50's package and faster than ResNet-50 in onnxruntime, RetinaNet at 1.0x).
RATIOS = [
    ('RedNet-50 .pt2 / ResNet-50 .pt2', ('RedNet', PT2), ('ResNet', PT2),
     dict(classifier='<= 0.8', retinanet='<= 1.0')),
    ('RedNet-50 .pt2 / ResNet-50 onnxruntime', ('RedNet', PT2), ('ResNet', ORT),
     dict(classifier='< 1.0')),
    ('RedNet-50 .pt2 / RedNet-50 eager', ('RedNet', PT2), ('RedNet', EAGER),
     dict(classifier='<= 1.0', retinanet='<= 1.0')),
    ('RedNet-50 .pt2 fused / composed', ('RedNet', PT2), ('RedNet', PT2_COMPOSED), {}),
    ('RedNet-50 .pt2 C++ / Python', ('RedNet', PT2_CPP), ('RedNet', PT2),
     dict(classifier='<= 1.0', retinanet='<= 1.0')),
    ('ResNet-50 .pt2 C++ / Python', ('ResNet', PT2_CPP), ('ResNet', PT2),
     dict(classifier='<= 1.0', retinanet='<= 1.0')),
    ('RedNet-50 / ResNet-50 eager', ('RedNet', EAGER), ('ResNet', EAGER), {}),
    ('RedNet-50 / ResNet-50 onnxruntime', ('RedNet', ORT), ('ResNet', ORT), {}),
]


def paired_ratios(cases: List[Case]) -> List[Ratio]:
    """The ``RATIOS`` of every model section whose cases were timed: medians (and
    extremes) of the per-round ratios."""
    result = []
    def find(section: str, model: str, backend: str) -> Optional[Case]:
        return next((c for c in cases if c.section == section and c.backend == backend
                     and c.name.startswith(model)), None)

    for section in dict.fromkeys(c.section for c in cases if c.section != 'op'):
        for label, top, bottom, targets in RATIOS:
            a, b = find(section, *top), find(section, *bottom)
            if a is None or b is None:
                continue
            ratios = [x / y for x, y in zip(a.times, b.times, strict=True)]
            result.append(Ratio(section, label, statistics.median(ratios), min(ratios),
                                max(ratios), targets.get(section, '')))
    return result


def print_rows(console: Console, rows: List[Row], threads: int) -> None:
    for section in dict.fromkeys(r.section for r in rows):
        table = Table(title=f'{section}: batch 1, {threads} threads, median (min) ms')
        table.add_column('case')
        backends = list(dict.fromkeys(r.backend for r in rows if r.section == section))
        for backend in backends:
            table.add_column(backend, justify='right')
        for case in dict.fromkeys(r.case for r in rows if r.section == section):
            cells = {r.backend: r for r in rows if r.section == section and r.case == case}
            # '-': a backend the case has not (only a fused model has a composed package)
            table.add_row(case, *(f'{cells[b].median_ms:.1f} ({cells[b].min_ms:.1f})'
                                  if b in cells else '-' for b in backends))
        console.print(table)
        for backend in backends:
            if backend != EAGER:
                diff = max(r.max_abs_diff for r in rows
                           if r.section == section and r.backend == backend)
                console.print(f'largest |{backend} - pytorch eager| in {section}: {diff:.2g}')


def print_ratios(console: Console, ratios: List[Ratio], rounds: int) -> None:
    table = Table(title=f'paired ratios: median of {rounds} per-round ratios (min - max)')
    for column in ('section', 'ratio', 'median', 'min - max', 'target'):
        table.add_column(column, justify='right' if column in ('median', 'min - max') else 'left')
    for r in ratios:
        table.add_row(r.section, r.ratio, f'{r.median:.2f}x', f'{r.min:.2f} - {r.max:.2f}',
                      r.target)
    console.print(table)


def write(out_dir: str, rows: List[Row], ratios: List[Ratio]) -> List[str]:
    """The tables as CSV and the timings as a bar plot in ``out_dir``; the files written."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    written = ['deploy_benchmark.csv', 'deploy_benchmark.png']
    write_csv(os.path.join(out_dir, 'deploy_benchmark.csv'), rows)
    if ratios:
        write_csv(os.path.join(out_dir, 'deploy_ratios.csv'), ratios)
        written.insert(1, 'deploy_ratios.csv')
    sections = list(dict.fromkeys(r.section for r in rows))
    fig, axes = plt.subplots(1, len(sections), figsize=(5.5 * len(sections), 4.2), squeeze=False)
    for ax, section in zip(axes[0], sections, strict=True):
        section_rows = [r for r in rows if r.section == section]
        cases = list(dict.fromkeys(r.case for r in section_rows))
        backends = list(dict.fromkeys(r.backend for r in section_rows))
        width = 0.8 / len(backends)
        for i, backend in enumerate(backends):
            picked = {r.case: r for r in section_rows if r.backend == backend}
            x = np.arange(len(cases)) + i * width
            # NaN: no bar where the case has not this backend.
            ax.bar(x, [picked[c].median_ms if c in picked else np.nan for c in cases], width,
                   label=backend)
            ax.scatter(x, [picked[c].min_ms if c in picked else np.nan for c in cases],
                       marker='_', s=300, color='black', zorder=3,
                       label='minimum' if i == 0 else None)
        ax.set_xticks(np.arange(len(cases)) + width * (len(backends) - 1) / 2, cases,
                      fontsize=8)
        ax.set_ylabel('ms (bars: median)')
        ax.set_title(section)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'deploy_benchmark.png'), dpi=110)
    return written


SECTIONS = ('op', 'classifier', 'retinanet')
BACKENDS = (ORT, PT2, PT2_CPP, PT2_COMPOSED)


@dataclass
class Options:
    """What ``run`` measures, and where (``tools/benchmark_deploy.py``'s arguments).

    Args:
        sections (list): of ``SECTIONS``.
        backends (list): the deployed backends of the model sections (of
            ``BACKENDS``; eager always runs; ``.pt2 (composed)`` only for
            models whose package calls the fused op, and with ``.pt2 (Python)``).
        threads (int): onnxruntime intra-op threads, torch threads, the runner's.
        rounds (int): timed runs of every case.
        classifier_shape, retinanet_shape (tuple): ``(H, W)`` of the model sections.
        retinanet_config (str): the RedNet-50 RetinaNet config (``retinanet`` section).
        runner_source (str, optional): the C++ runner's CMake project; without
            it, no ``.pt2 (C++)`` cases.
        runner_dir (str): where the runner is built.
        out_dir (str, optional): where the CSV files and the plot go.
    """
    sections: Sequence[str] = SECTIONS
    backends: Sequence[str] = BACKENDS
    threads: int = 2
    rounds: int = 10
    classifier_shape: Tuple[int, int] = (224, 224)
    retinanet_shape: Tuple[int, int] = (800, 1344)
    retinanet_config: Optional[str] = None
    runner_source: Optional[str] = None
    runner_dir: str = 'work_dirs/aoti_runner'
    out_dir: Optional[str] = None
    console: Console = field(default_factory=Console)


def make_runner(options: Options, work_dir: str,
                processes: contextlib.ExitStack) -> Optional[Runner]:
    """The C++ runner, built, and the op library; None (said why) when it cannot run."""
    console = options.console
    if PT2_CPP not in options.backends or not ({'classifier', 'retinanet'}
                                               & set(options.sections)):
        return None
    library = runner_op_library()
    if library is None or options.runner_source is None:
        console.print('no C++ runner: ' + ('the op library is not built (setup.py build_ext)'
                                           if library is None else 'no runner sources given'))
        return None
    console.print(f'building the C++ runner in {options.runner_dir} ...')
    return Runner(build_runner(options.runner_source, options.runner_dir), library, work_dir,
                  options.threads, processes)


def _cases(options: Options, work_dir: str, runner: Optional[Runner]) -> List[Case]:
    """Every case of ``options.sections``, exported and checked."""
    cases = op_cases(options.threads) if 'op' in options.sections else []
    common = dict(threads=options.threads, backends=options.backends, work_dir=work_dir,
                  runner=runner)
    if 'classifier' in options.sections:
        cases += model_cases('classifier', {
            'RedNet-50': rednet50_classifier_cfg(),
            'ResNet-50 (mmpretrain)': get_config('mmpretrain::resnet/resnet50_8xb32_in1k.py'),
        }, graphs.CLASSIFIER, options.classifier_shape, **common)
    if 'retinanet' in options.sections:
        if options.retinanet_config is None:
            raise ValueError('the retinanet section needs retinanet_config (the RedNet-50 '
                             'RetinaNet config file)')
        cases += model_cases('retinanet', {
            'RedNet-50 RetinaNet': Config.fromfile(options.retinanet_config),
            'ResNet-50 RetinaNet (mmdet)': get_config('mmdet::retinanet/'
                                                      'retinanet_r50_fpn_1x_coco.py'),
        }, graphs.DETECTOR, options.retinanet_shape, **common)
    return cases


def run(options: Options) -> Tuple[List[Row], List[Ratio]]:
    """Export, check and time every case of ``options``; print the tables (and write
    them with ``options.out_dir``): ``(rows, ratios)``."""
    for name, chosen, known in (('sections', options.sections, SECTIONS),
                                ('backends', options.backends, BACKENDS)):
        unknown = [item for item in chosen if item not in known]
        if unknown:
            raise ValueError(f'{name} must be of {list(known)}, got {unknown}')
    if options.threads < 1 or options.rounds < 1:
        raise ValueError(f'threads and rounds must be >= 1, got {options.threads} and '
                         f'{options.rounds}')
    torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    console = options.console
    with tempfile.TemporaryDirectory(prefix='benchmark_deploy_') as work_dir, \
            contextlib.ExitStack() as processes:
        runner = make_runner(options, work_dir, processes)
        console.print('exporting and checking ...')
        cases = _cases(options, work_dir, runner)
        run_rounds(cases, options.rounds, console)
    rows, ratios = rows_of(cases), paired_ratios(cases)
    print_rows(console, rows, options.threads)
    if ratios:
        print_ratios(console, ratios, options.rounds)
    if options.out_dir:
        written = write(options.out_dir, rows, ratios)
        console.print(f'wrote {", ".join(written)} in {options.out_dir}')
    return rows, ratios
