"""Benchmark training memory and step time: RedNet-50 (memory saving on/off) vs ResNet-50.

RedNet-50 variants per section, each measured in its own process so that
allocations never mix, on the same input and batch, in one run:

* ``after``: RedNet-50 as shipped: every involution keeps only its input and
  regenerates its kernel in backward (``regenerate_kernel=True``), and the
  stem is recomputed in backward (``recompute_stem=True``);
* ``before``: RedNet-50 with both off (every involution keeps its generated
  kernel and its kernel branch's activations, the stem keeps its activations);
* ``stem-kept`` (not run by default): kernel regeneration on, stem
  recomputation off, to tell the two apart;
* ``ResNet-50``: mmdet's ResNet-50, the network RedNet replaces.

Sections: the bare backbone (loss = sum of the means of the four stage
outputs), RetinaNet and Faster R-CNN (mmdet's ``*_r50_fpn_1x_coco`` configs,
backbone swapped to ``mmrednet.RedNet`` with the 7x7 stem involution of the
detection models; fake batch from ``mmdet.testing.demo_mm_inputs``).

Per model it measures, for one training step (zero grad, forward, backward,
SGD step, after one warm-up step):

* ``peak MB``: peak bytes allocated during the step beyond what existed before
  it (parameters, momentum buffers): torch profiler allocation events on CPU,
  ``torch.cuda.max_memory_allocated`` on CUDA (:func:`mmrednet.utils.peak_memory`);
* ``kept MB``: bytes still allocated at the end of the forward, that is what
  the autograd graph holds for backward (allocator view: profiler events on
  CPU, ``torch.cuda.memory_allocated`` on CUDA);
* ``involution MB``: the part of ``kept MB`` that the involution layers add:
  storages first saved inside an ``Involution`` module. The layer's input is
  not counted there (the preceding layer saves it anyway); before the change
  this is the generated kernel (``N x G x K*K x H x W``) plus the kernel
  branch's BN input, statistics and ReLU output, after it nothing. This is
  "the memory the layer needed" of the targets (counted with saved-tensor
  hooks, :func:`mmrednet.utils.saved_bytes_inside`);
* ``step ms``: median wall time of the step; RedNet's ``after`` worker also
  times after and before alternately in one process (the ``paired`` ratio,
  which other load on a shared machine does not skew). Saving memory costs
  time: the kernel branches and the stem run twice.

Targets (backbone section): RedNet-50 peak <= ResNet-50 peak; involution MB
after <= 60% of before; step time after <= 1.10 x before.

Examples::

    # CPU defaults (small: backbone 2x320x320, detectors 1x384x384)
    python tools/benchmark_memory.py --out-dir work_dirs/memory
    # the user report's setting on a GPU: mmdet defaults, 2 images of 1333x800 per GPU
    python tools/benchmark_memory.py --device cuda --batch 2 --size 800 1333 \\
        --det-batch 2 --det-size 800 1333
"""
import argparse
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from rich.console import Console
from rich.table import Table

VARIANTS = ('after', 'before', 'ResNet-50', 'stem-kept')
DEFAULT_VARIANTS = VARIANTS[:3]
SECTIONS = ('backbone', 'retinanet', 'faster_rcnn')
DET_CONFIGS = dict(retinanet='mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
                   faster_rcnn='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py')
TARGETS = dict(vs_resnet=1.0, involution_ratio=0.6, time_ratio=1.10)
MB = 2**20


@dataclass
class Job:
    """What one worker process measures."""

    section: str
    variant: str
    device: str
    batch: int
    size: Tuple[int, int]
    repeat: int
    threads: int


@dataclass
class Row:
    """One measured model."""

    section: str
    variant: str
    input: str
    peak_mb: float
    kept_mb: float
    involution_mb: float
    step_ms: float
    paired_time_ratio: float = float('nan')


# --------------------------------------------------------------------- models


def _quiet_init(model: torch.nn.Module) -> None:
    """``init_weights`` without mmengine's per-parameter log lines."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def _rednet_cfg(variant: str, **kwargs) -> dict:
    return dict(type='mmrednet.RedNet', depth=50, recompute_stem=variant == 'after',
                involution_cfg=dict(regenerate_kernel=variant != 'before'), **kwargs)


def _backbone(variant: str, device: str, batch: int, size: Tuple[int, int]):
    """Backbone, its input and its loss; every parameter trains (no frozen stage)."""
    from mmdet.models.backbones import ResNet

    from mmrednet.registry import MODELS

    model = ResNet(depth=50) if variant == 'ResNet-50' else MODELS.build(
        _rednet_cfg(variant))
    _quiet_init(model)
    model.to(device).train()
    x = torch.randn(batch, 3, *size, device=device)

    def loss() -> torch.Tensor:
        return sum(out.float().mean() for out in model(x))

    return model, loss


def _detector(section: str, variant: str, device: str, batch: int, size: Tuple[int, int]):
    """mmdet detector with its config's training settings, a fake batch and its loss."""
    from mmdet.registry import MODELS
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.hub import get_config

    register_all_modules()
    cfg = get_config(DET_CONFIGS[section])
    backbone = cfg.model.backbone
    backbone.init_cfg = None  # no checkpoint download: weights don't change memory or time
    if variant != 'ResNet-50':
        # The detection RedNet (7x7 stem involution) with the config's frozen
        # stages and norm settings, exactly as the ResNet-50 it replaces.
        cfg.model.backbone = _rednet_cfg(
            variant, stem_kernel=7, out_indices=backbone.out_indices,
            frozen_stages=backbone.frozen_stages, norm_cfg=backbone.norm_cfg,
            norm_eval=backbone.norm_eval, style=backbone.style)
    model = MODELS.build(cfg.model)
    _quiet_init(model)
    model.to(device).train()
    torch.manual_seed(0)
    inputs = demo_mm_inputs(batch_size=batch, image_shapes=[(3, *size)] * batch,
                            num_items=[8] * batch, num_classes=80, device=device)
    data = model.data_preprocessor(inputs, True)

    def loss() -> torch.Tensor:
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        return model.parse_losses(losses)[0]

    return model, loss


# ---------------------------------------------------------------- measurement


def involution_saved_bytes(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> int:
    """Bytes the involution layers of ``model`` add to what autograd keeps for backward."""
    from mmrednet.models import Involution
    from mmrednet.utils import saved_bytes_inside

    saved, out = saved_bytes_inside(model, loss, lambda m: isinstance(m, Involution))
    out.backward()  # free the graph (and check it still works)
    return saved


def measure(job: Job) -> Row:
    """Build one model and measure it (runs in a fresh worker process)."""
    from mmrednet.utils import peak_memory, retained_memory, time_call

    torch.set_num_threads(job.threads)
    torch.manual_seed(0)
    if job.section == 'backbone':
        model, loss = _backbone(job.variant, job.device, job.batch, job.size)
    else:
        model, loss = _detector(job.section, job.variant, job.device, job.batch, job.size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step() -> None:
        loss().backward()
        optimizer.step()
        # Gradients are allocated inside the step and freed after it (mmengine
        # zeroes them to None), so every step starts from parameters and
        # optimizer state only.
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: momentum buffers and lazy state exist before measuring
    peak = peak_memory(step, job.device)
    graph = []
    kept = retained_memory(lambda: graph.append(loss()), job.device)
    graph.pop().backward()
    involution = involution_saved_bytes(model, loss)
    optimizer.zero_grad(set_to_none=True)
    seconds = time_call(step, job.device, repeat=job.repeat, warmup=0)
    paired = paired_time_ratio(model, step, job.device, job.repeat) \
        if job.variant == 'after' else float('nan')
    return Row(job.section, job.variant, f'{job.batch}x3x{job.size[0]}x{job.size[1]}',
               peak / MB, kept / MB, involution / MB, seconds * 1e3, paired)


def _set_memory_saving(model: torch.nn.Module, on: bool) -> None:
    """Switch kernel regeneration and stem recomputation of every RedNet part of ``model``."""
    from mmrednet.models import Involution, RedNet

    for module in model.modules():
        if isinstance(module, Involution):
            module.regenerate_kernel = on
        elif isinstance(module, RedNet):
            module.recompute_stem = on


def paired_time_ratio(model: torch.nn.Module, step: Callable[[], None], device: str,
                      repeat: int) -> float:
    """Median of after/before step-time ratios, the two timed alternately in one process.

    The memory saving only changes what is kept for backward, so the same
    model times both variants. Alternating them (which goes first alternates
    too) cancels the load of other processes on a shared machine, which the
    separate timings of the table do not. Switching the saving, timed with
    the step, takes microseconds against a step's hundreds of milliseconds.
    """
    from mmrednet.utils import interleaved_times

    def variant(on: bool) -> Callable[[], None]:
        return lambda: (_set_memory_saving(model, on), step())

    try:
        seconds = interleaved_times({True: variant(True), False: variant(False)}, repeat, device)
    finally:
        _set_memory_saving(model, True)
    ratios = sorted(a / b for a, b in zip(seconds[True], seconds[False], strict=True))
    return ratios[len(ratios) // 2]


def run_all(jobs: Sequence[Job], console: Console) -> List[Row]:
    """Measure every job in its own 'spawn' process, one after the other."""
    context = multiprocessing.get_context('spawn')
    rows = []
    for job in jobs:
        console.print(f'[dim]measuring {job.section} / {job.variant} ...[/dim]')
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            rows.append(pool.submit(measure, job).result())
    return rows


# ------------------------------------------------------------------- reporting


def _ratio(a: float, b: float) -> float:
    return a / b if b else float('nan')


def summarize(rows: Sequence[Row]) -> List[dict]:
    """Per section: after/before and after/ResNet ratios and whether targets hold."""
    by = {(r.section, r.variant): r for r in rows}
    summary = []
    for section in dict.fromkeys(r.section for r in rows):
        after, before = by.get((section, 'after')), by.get((section, 'before'))
        resnet = by.get((section, 'ResNet-50'))
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
                        before_peak_vs_resnet=None if before is None else _ratio(
                            before.peak_mb, resnet.peak_mb))
        summary.append(item)
    return summary


def _verdict(value: Optional[float], target: float) -> str:
    if value is None:
        return '-'
    ok = value <= target
    return f"{value:.3f} [{'green' if ok else 'red'}]({'ok' if ok else 'MISSED'})[/]"


def print_tables(console: Console, rows: Sequence[Row], summary: Sequence[dict]) -> None:
    table = Table(title='Training step: peak memory, memory kept for backward, time')
    for col in ('model', 'variant', 'input', 'peak MB', 'kept MB', 'involution MB',
                'step ms'):
        table.add_column(col, justify='right')
    for r in rows:
        table.add_row(r.section, r.variant, r.input, f'{r.peak_mb:.1f}', f'{r.kept_mb:.1f}',
                      f'{r.involution_mb:.1f}', f'{r.step_ms:.0f}')
    console.print(table)
    table = Table(title='Ratios of RedNet-50 "after" (targets are checked on every model)')
    for col in ('model', 'peak / ResNet-50 (<= 1)', 'before: peak / ResNet-50',
                'peak / before', 'involution MB / before (<= 0.6)',
                'step time / before', 'paired step time / before (<= 1.10)'):
        table.add_column(col, justify='right')
    for s in summary:
        before_vs_resnet = s.get('before_peak_vs_resnet')
        peak_vs_before = s.get('peak_vs_before')
        table.add_row(
            s['section'], _verdict(s.get('peak_vs_resnet'), TARGETS['vs_resnet']),
            '-' if before_vs_resnet is None else f'{before_vs_resnet:.3f}',
            '-' if peak_vs_before is None else f'{peak_vs_before:.3f}',
            _verdict(s.get('involution_vs_before'), TARGETS['involution_ratio']),
            '-' if s.get('time_vs_before') is None else f"{s['time_vs_before']:.3f}",
            _verdict(s.get('paired_time_vs_before'), TARGETS['time_ratio']))
    console.print(table)
    console.print('involution MB: bytes the involution layers add to what autograd keeps '
                  'for backward (their input excluded); kept MB: all saved activations; '
                  'peak MB: peak allocated during one training step beyond parameters and '
                  'optimizer state; paired step time: after and before timed '
                  'alternately in one process (robust to other load).')


def write_outputs(out_dir: str, rows: Sequence[Row], summary: Sequence[dict]) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from mmrednet.utils import write_csv

    os.makedirs(out_dir, exist_ok=True)
    write_csv(os.path.join(out_dir, 'memory.csv'), rows)
    keys = sorted({k for s in summary for k in s})
    write_csv(os.path.join(out_dir, 'memory_ratios.csv'), summary,
              fieldnames=['section'] + [k for k in keys if k != 'section'])
    sections = list(dict.fromkeys(r.section for r in rows))
    by = {(r.section, r.variant): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    variants = [v for v in VARIANTS if any(r.variant == v for r in rows)]
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        xs = [j + (i - (len(variants) - 1) / 2) * width for j in range(len(sections))]
        for ax, field in zip(axes, ('peak_mb', 'step_ms'), strict=True):
            ax.bar(xs, [getattr(by[(s, variant)], field) if (s, variant) in by else 0
                        for s in sections], width, label=f'RedNet-50 {variant}'
                   if variant != 'ResNet-50' else variant)
    for ax, title in zip(axes, ('peak training memory (MB)', 'training step (ms)'),
                         strict=True):
        ax.set_xticks(range(len(sections)), sections)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, 'memory.png'), dpi=110)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--batch', type=int, default=2, help='backbone batch')
    parser.add_argument('--size', type=int, nargs='+', default=[320],
                        help='backbone input H [W]')
    parser.add_argument('--det-batch', type=int, default=1, help='detector batch')
    parser.add_argument('--det-size', type=int, nargs='+', default=[384],
                        help='detector image H [W]')
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument('--variants', nargs='+', choices=VARIANTS,
                        default=list(DEFAULT_VARIANTS))
    parser.add_argument('--repeat', type=int, default=3, help='timed steps per model')
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(),
                        help='torch CPU threads of each worker')
    parser.add_argument('--out-dir', help='write memory.csv, memory_ratios.csv, memory.png')
    args = parser.parse_args(argv)
    for name in ('size', 'det_size'):
        value = getattr(args, name)
        if len(value) not in (1, 2):
            parser.error(f'--{name.replace("_", "-")} takes H or H W')
        setattr(args, name, (value[0], value[-1]))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    console = Console(width=150)
    console.print(f'device {args.device}, torch {torch.__version__}, {args.threads} threads '
                  'per worker, one spawned process per model')
    jobs = [
        Job(section, variant, args.device,
            args.batch if section == 'backbone' else args.det_batch,
            args.size if section == 'backbone' else args.det_size, args.repeat, args.threads)
        for section in args.sections for variant in args.variants
    ]
    rows = run_all(jobs, console)
    summary = summarize(rows)
    print_tables(console, rows, summary)
    if args.out_dir:
        write_outputs(args.out_dir, rows, summary)
        console.print(f'wrote {args.out_dir}/memory.csv, memory_ratios.csv, memory.png')


if __name__ == '__main__':
    main()
