"""Benchmark the involution op and RedNet-50 against their baselines, in one run.

CPU op section: each kernel of the op (forward, grad_input, grad_weight) on the
RedNet-50 stage shapes, in both layouts the CPU kernels compute in place
(contiguous NCHW; channels-last with the kernel pixel-major, what RedNet runs
on CPU): time, achieved bandwidth (minimal bytes: one read of each input, one
write of each output) and its fraction of the copy bandwidth measured in the
same run (a 256 MiB tensor copy, far out of cache, same thread count, timed
between the kernels' repeats; the fraction is the median of per-repeat
ratios, so load from other processes affects both sides alike). Then
forward+backward time (the speedup is the median of paired ratios) and extra
peak memory against the unfold reference.
Model section: RedNet-50 against mmdet's ResNet-50 backbone (both with
``norm_eval=False``), training step and inference, at each input size, timed
alternately; ResNet-50 run channels-last is shown for context. Every CPU
timing interleaves the sides and reverses their order every other repeat
(:func:`mmrednet.utils.interleaved_times`), so that neither always runs first.
CUDA section (whenever a GPU is present): forward and backward of the CuPy
kernels on the RedNet-50 stage shapes at batch 32, fp32 and fp16, as a fraction
of the copy bandwidth measured in the run, beside the traffic model's floor
(``mmrednet.ops.cuda_traffic``), and against the unfold reference and a
one-thread-per-output kernel; RetinaNet RedNet-50 vs ResNet-50 AMP training
step time and peak memory (batch 8, 1333x800). Without a GPU it prints the
traffic model alone.

Example::

    python tools/benchmark_involution.py --threads 2 --out-dir work_dirs/benchmark
"""
import argparse
import copy
import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from rich.console import Console
from rich.progress import track
from rich.table import Table

from mmrednet.ops import involution, involution_reference
from mmrednet.utils import interleaved_times, peak_memory, time_call, write_csv

# RedNet-50 stages: (channels of the involution, feature size); K=7, 16 channels a group.
STAGES = [(64, 56), (128, 28), (256, 14), (512, 7)]
TARGETS = dict(copy_fraction=0.5, op_memory_ratio=0.1, train_ratio=1.0, infer_ratio=1.0)
LAYOUTS = ('channels_last', 'contiguous')
KERNELS = ('forward', 'grad_input', 'grad_weight')
COPY_BYTES = 256 * 2**20
_STAGE_GEOMETRY = ([1, 1], [3, 3], [1, 1])  # stride, padding, dilation of the stage involutions


@dataclass
class KernelRow:
    shape: str
    layout: str
    kernel: str
    ms: float
    gbs: float  # minimal bytes / time
    copy_gbs: float  # tensor copy in the same run, read + write
    copy_fraction: float  # median over repeats of (gbs / copy_gbs)


@dataclass
class OpRow:
    shape: str
    ours_ms: float
    reference_ms: float
    speedup: float
    ours_mb: float
    reference_mb: float
    memory_ratio: float


@dataclass
class ModelRow:
    input: str
    mode: str
    rednet_ms: float
    resnet_ms: float
    ratio: float  # median of paired RedNet / ResNet-50 ratios
    resnet_cl_ms: float
    ratio_cl: float  # against ResNet-50 run channels-last
    target: float


def _median(values: Sequence[float]) -> float:
    return sorted(values)[len(values) // 2]


def _stage_tensors(batch: int, channels: int, size: int, layout: str):
    """x, w, grad_out of a stage involution, as a model in ``layout`` has them."""
    x = torch.randn(batch, channels, size, size)
    grad_out = torch.randn_like(x)
    w = torch.randn(batch, size, size, channels // 16, 7, 7).permute(0, 3, 4, 5, 1, 2)
    if layout == 'channels_last':
        cl = torch.channels_last
        return x.contiguous(memory_format=cl), w, grad_out.contiguous(memory_format=cl)
    return x, w.contiguous(), grad_out


def _kernel_calls(x, w, grad_out) -> Dict[str, Callable[[], object]]:
    """The op's three kernels through the dispatch point, as autograd calls them."""
    ops, geometry = torch.ops.mmrednet, _STAGE_GEOMETRY
    return dict(forward=lambda: ops.involution(x, w, *geometry),
                grad_input=lambda: ops.involution_grad_input(grad_out, x, w, *geometry),
                grad_weight=lambda: ops.involution_grad_weight(grad_out, x, w, *geometry))


def benchmark_kernels(batch: int, repeat: int) -> List[KernelRow]:
    """Each CPU kernel against the copy bandwidth, timed alternately with a tensor copy."""
    src = torch.ones(COPY_BYTES // 4)
    dst = torch.zeros_like(src)
    rows = []
    for (channels, size), layout in track([(s, lay) for s in STAGES for lay in LAYOUTS],
                                          description='CPU kernels'):
        x, w, grad_out = _stage_tensors(batch, channels, size, layout)
        calls = _kernel_calls(x, w, grad_out)
        minimal = (2 * x.numel() + w.numel()) * x.element_size()  # the same for all three
        calls['copy'] = lambda: dst.copy_(src)
        for fn in calls.values():
            fn()  # warm-up
        times = interleaved_times(calls, repeat)
        copy_gbs = 2 * COPY_BYTES / _median(times['copy']) / 1e9
        for name in KERNELS:
            seconds = _median(times[name])
            fractions = [minimal * copy / (t * 2 * COPY_BYTES)
                         for copy, t in zip(times['copy'], times[name], strict=True)]
            rows.append(KernelRow(f'{batch}x{channels}x{size}x{size}', layout, name,
                                  seconds * 1e3, minimal / seconds / 1e9, copy_gbs,
                                  _median(fractions)))
    return rows


def _fwd_bwd(fn, x, w):
    def step():
        x.grad = w.grad = None
        fn(x, w, 1, 3).sum().backward()
    return step


def benchmark_op(batch: int, device: str, repeat: int) -> List[OpRow]:
    rows = []
    for channels, size in track(STAGES, description='op vs unfold'):
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
        w = torch.randn(batch, channels // 16, 7, 7, size, size, device=device,
                        requires_grad=True)
        ours, ref = _fwd_bwd(involution, x, w), _fwd_bwd(involution_reference, x, w)
        ours(), ref()  # warm-up
        times = interleaved_times(dict(ours=ours, ref=ref), repeat, device)
        t_ours, t_ref = _median(times['ours']), _median(times['ref'])
        speedup = _median([r / o for o, r in zip(times['ours'], times['ref'], strict=True)])
        m_ours, m_ref = peak_memory(ours, device), peak_memory(ref, device)
        rows.append(
            OpRow(f'{batch}x{channels}x{size}x{size}', t_ours * 1e3, t_ref * 1e3, speedup,
                  m_ours / 2**20, m_ref / 2**20, m_ours / m_ref))
    return rows


def _backbones() -> Dict[str, torch.nn.Module]:
    """RedNet-50 and mmdet's ResNet-50 with the same options (BN in training mode)."""
    from mmdet.models.backbones import ResNet

    from mmrednet.models import RedNet
    resnet_cl = ResNet(depth=50, norm_eval=False).to(memory_format=torch.channels_last)
    return {'RedNet-50': RedNet(depth=50, norm_eval=False),
            'ResNet-50': ResNet(depth=50, norm_eval=False), 'ResNet-50 CL': resnet_cl}


def parse_input(text: str) -> Tuple[int, int, int]:
    """``'2x320x320'`` -> (batch, height, width)."""
    batch, height, width = (int(v) for v in text.split('x'))
    return batch, height, width


def benchmark_models(inputs: Sequence[str], device: str, repeat: int) -> List[ModelRow]:
    models = {name: m.to(device) for name, m in _backbones().items()}

    def train_step(model, x) -> Callable[[], None]:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step():
            model.train()
            optimizer.zero_grad()
            sum(o.float().mean() for o in model(x)).backward()
            optimizer.step()
        return step

    def inference(model, x) -> Callable[[], None]:
        def run():
            model.eval()
            with torch.no_grad():
                model(x)
        return run

    rows = []
    for text in inputs:
        batch, height, width = parse_input(text)
        x = torch.randn(batch, 3, height, width, device=device)
        for mode, make, target in (('train step', train_step, TARGETS['train_ratio']),
                                   ('inference', inference, TARGETS['infer_ratio'])):
            steps = {}
            for name, model in models.items():
                image = x.contiguous(memory_format=torch.channels_last) if 'CL' in name else x
                steps[name] = make(model, image)
                steps[name]()  # warm-up
            times = interleaved_times(steps, repeat, device,
                                      functools.partial(track, description=f'{text} {mode}'))
            ratio, ratio_cl = (
                _median([a / b for a, b in zip(times['RedNet-50'], times[base], strict=True)])
                for base in ('ResNet-50', 'ResNet-50 CL'))
            ms = {name: _median(t) * 1e3 for name, t in times.items()}
            rows.append(ModelRow(f'{batch}x3x{height}x{width}', mode, ms['RedNet-50'],
                                 ms['ResNet-50'], ratio, ms['ResNet-50 CL'], ratio_cl, target))
    return rows


# ---------------------------------------------------------------------------
# CUDA section (only with a GPU): the CuPy kernels of mmrednet/ops/cuda.py
# against the memory-bandwidth limit, the unfold reference (a) and the
# one-thread-per-output baseline kernel (b); RedNet-50 against ResNet-50 in
# RetinaNet training.
# ---------------------------------------------------------------------------
CUDA_TARGETS = dict(copy_fraction=0.7, baseline_speedup=3.0, retina_time_ratio=1.0)
CUDA_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16}
_GEOMETRY = ([1, 1], [3, 3], [1, 1])  # stride, padding, dilation of the stage involutions


@dataclass
class CudaOpRow:
    shape: str
    dtype: str
    direction: str  # forward, or backward (grad_input + grad_weight)
    ours_ms: float
    floor_ms: float  # the traffic model's minimal bytes at the measured copy bandwidth
    reference_ms: float  # (a) the unfold reference
    baseline_ms: float  # (b) one thread per output (nan without CuPy)
    ours_gbs: float  # minimal bytes / time
    copy_fraction: float  # of the device-to-device copy bandwidth
    vs_reference: float
    vs_baseline: float


@dataclass
class RetinaRow:
    backbone: str
    step_ms: float
    peak_mb: float
    time_ratio: float  # against ResNet-50
    memory_ratio: float
    target_time_ratio: float


def _cuda_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median time of ``fn()`` in milliseconds by CUDA events, after a warm-up call."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(max(1, repeat)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def copy_bandwidth(repeat: int, nbytes: int = 2**30) -> float:
    """Device-to-device copy bandwidth in bytes/s (read + write), measured now."""
    buffers = [torch.empty(nbytes // 4, device='cuda') for _ in range(2)]
    seconds = _cuda_ms(lambda: buffers[1].copy_(buffers[0]), max(repeat, 10)) * 1e-3
    buffers.clear()
    torch.cuda.empty_cache()
    return 2 * nbytes / seconds


def _op_calls(x, w, grad_out):
    """Forward and backward of ours, (a) and (b), as (direction, {name: fn})."""
    from mmrednet.ops import cuda as cuda_backend
    ops = torch.ops.mmrednet
    shapes = (x.shape, w.shape, *_GEOMETRY)
    xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
    ref_out = involution_reference(xr, wr, *_GEOMETRY)

    def reference_backward():
        torch.autograd.grad(ref_out, (xr, wr), grad_out, retain_graph=True)

    return [
        ('forward', dict(
            ours=lambda: ops.involution(x, w, *_GEOMETRY),
            reference=lambda: involution_reference(x, w, *_GEOMETRY),
            baseline=lambda: cuda_backend.baseline('forward', x, w, *shapes))),
        ('backward', dict(
            ours=lambda: (ops.involution_grad_input(grad_out, x, w, *_GEOMETRY),
                          ops.involution_grad_weight(grad_out, x, w, *_GEOMETRY)),
            reference=reference_backward,
            baseline=lambda: (cuda_backend.baseline('grad_input', grad_out, w, *shapes),
                              cuda_backend.baseline('grad_weight', grad_out, x, *shapes)))),
    ]


def _minimal_bytes(x: torch.Tensor, w: torch.Tensor) -> Dict[str, int]:
    """DRAM floor of forward and of backward (grad_input + grad_weight), by the traffic model."""
    from mmrednet.ops import cuda_traffic
    sm_count = torch.cuda.get_device_properties(x.device).multi_processor_count
    floor = {op: cuda_traffic.traffic(op, x.shape, w.shape, *_GEOMETRY, x.dtype,
                                      sm_count).minimal
             for op in ('forward', 'grad_input', 'grad_weight')}
    return dict(forward=floor['forward'], backward=floor['grad_input'] + floor['grad_weight'])


def benchmark_cuda_op(batch: int, repeat: int, bandwidth: float) -> List[CudaOpRow]:
    rows = []
    for (dtype_name, dtype), (channels, size) in track(
            [(d, s) for d in CUDA_DTYPES.items() for s in STAGES], description='CUDA op shapes'):
        x = torch.randn(batch, channels, size, size, device='cuda', dtype=dtype)
        w = torch.randn(batch, channels // 16, 7, 7, size, size, device='cuda', dtype=dtype)
        grad_out = torch.randn_like(x)
        minimal = _minimal_bytes(x, w)
        for direction, calls in _op_calls(x, w, grad_out):
            times = {}
            for name, fn in calls.items():
                try:
                    times[name] = _cuda_ms(fn, repeat if name == 'ours' else max(1, repeat // 2))
                except RuntimeError as exc:  # no CuPy for the baseline, or out of memory
                    print(f'{name} {direction} {tuple(x.shape)} {dtype_name}: {exc}')
                    times[name] = math.nan
            gbs = minimal[direction] / (times['ours'] * 1e-3)
            rows.append(
                CudaOpRow(f'{batch}x{channels}x{size}x{size}', dtype_name, direction,
                          times['ours'], minimal[direction] / bandwidth * 1e3,
                          times['reference'], times['baseline'], gbs / 1e9,
                          gbs / bandwidth, times['reference'] / times['ours'],
                          times['baseline'] / times['ours']))
        del x, w, grad_out
        torch.cuda.empty_cache()
    return rows


def _retinanets() -> Dict[str, torch.nn.Module]:
    """RetinaNet-FPN with the RedNet-50 config's backbone and with mmdet's ResNet-50."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import mmrednet.models  # noqa: F401  (registers RedNet)
    register_all_modules()
    configs = Path(__file__).resolve().parents[1] / 'configs' / 'rednet'
    rednet = Config.fromfile(str(configs / 'retinanet_rednet50_fpn_1x_coco.py')).model
    rednet.backbone.init_cfg = None
    resnet = copy.deepcopy(rednet)
    resnet.backbone = dict(type='ResNet', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                           frozen_stages=1, norm_cfg=dict(type='BN', requires_grad=True),
                           norm_eval=True, style='pytorch')
    return {'RedNet-50': MODELS.build(rednet), 'ResNet-50': MODELS.build(resnet)}


def _detection_batch(batch: int, height: int, width: int) -> dict:
    """What a COCO dataloader yields: uint8 images and samples with random boxes."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, height, width), dtype=torch.uint8,
                                    generator=generator))
        corner = torch.rand(10, 2, generator=generator) * torch.tensor([width, height]) * 0.8
        boxes = torch.cat([corner, corner + 32 + 256 * torch.rand(10, 2, generator=generator)], 1)
        boxes[:, 0::2].clamp_(max=width)
        boxes[:, 1::2].clamp_(max=height)
        sample = DetDataSample(metainfo=dict(img_shape=(height, width), ori_shape=(height, width),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, 80, (10, ), generator=generator))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def benchmark_retinanet(batch: int, height: int, width: int, repeat: int,
                        device: str = 'cuda') -> List[RetinaRow]:
    """One AMP training step (forward, loss, backward, SGD) and its peak memory."""
    from mmengine.optim import AmpOptimWrapper, OptimWrapper
    data = _detection_batch(batch, height, width)
    measured = {}
    for name, model in _retinanets().items():
        model = model.to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        wrapper = (AmpOptimWrapper(optimizer=optimizer) if device == 'cuda' else
                   OptimWrapper(optimizer=optimizer))

        def step(model=model, wrapper=wrapper):
            model.train_step(data, wrapper)

        seconds = time_call(step, device, repeat=repeat, warmup=2)
        peak = math.nan
        if device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            step()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20
        measured[name] = (seconds * 1e3, peak)
        model.cpu()
        del model, optimizer, wrapper
        if device == 'cuda':
            torch.cuda.empty_cache()
    base_ms, base_mb = measured['ResNet-50']
    return [RetinaRow(name, ms, mb, ms / base_ms, mb / base_mb, CUDA_TARGETS['retina_time_ratio'])
            for name, (ms, mb) in measured.items()]


def _print_cuda(console: Console, bandwidth: float, op_rows: List[CudaOpRow],
                retina_rows: List[RetinaRow]) -> None:
    from mmrednet.ops import cuda as cuda_backend
    console.print(f'CUDA: {torch.cuda.get_device_name()}, device-to-device copy '
                  f'{bandwidth / 1e9:.0f} GB/s; kernels: '
                  f'{cuda_backend.unavailable_reason() or "CuPy kernels"}')
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


def _write_cuda(out_dir: str, op_rows: List[CudaOpRow], retina_rows: List[RetinaRow]) -> None:
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


def run_cuda_section(args, console: Console) -> None:
    from mmrednet.ops import cuda_traffic
    cuda_traffic.print_tables(console, args.cuda_batch,
                              torch.cuda.get_device_properties(0).multi_processor_count)
    bandwidth = copy_bandwidth(args.repeat)
    op_rows = benchmark_cuda_op(args.cuda_batch, args.repeat, bandwidth)
    retina_rows: Optional[List[RetinaRow]] = []
    if not args.skip_model:
        retina_rows = benchmark_retinanet(args.retina_batch, 800, 1333, args.repeat)
    _print_cuda(console, bandwidth, op_rows, retina_rows)
    if args.out_dir:
        _write_cuda(args.out_dir, op_rows, retina_rows)
        console.print(f'wrote {args.out_dir}/cuda_op.csv, retinanet.csv, cuda_benchmark.png')


def _verdict(ok: bool) -> str:
    return '[green]ok[/green]' if ok else '[red]MISSED[/red]'


def _print(console: Console, kernel_rows: List[KernelRow], op_rows: List[OpRow],
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


def _write(out_dir: str, kernel_rows: List[KernelRow], op_rows: List[OpRow],
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


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--threads', type=int, default=2,
                        help='torch CPU threads for every measurement (default 2)')
    parser.add_argument('--batch', type=int, default=8, help='op batch size')
    parser.add_argument('--model-inputs', nargs='+', default=['2x320x320', '1x800x1333'],
                        help='backbone inputs as NxHxW')
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--quick', action='store_true',
                        help='fewer repeats, a batch of 2 for the op, one small model input '
                        '(a smoke run)')
    parser.add_argument('--skip-model', action='store_true')
    parser.add_argument('--cuda-batch', type=int, default=32,
                        help='batch of the CUDA op section (RedNet-50 stage shapes)')
    parser.add_argument('--retina-batch', type=int, default=8,
                        help='batch of the RetinaNet 1333x800 AMP training step')
    parser.add_argument('--skip-cuda', action='store_true',
                        help='skip the CUDA section (it runs whenever a GPU is present)')
    parser.add_argument('--out-dir', help='write kernels.csv, op.csv, model.csv and '
                        'benchmark.png here')
    return parser.parse_args()


def main():
    args = parse_args()
    if args.quick:
        args.batch, args.repeat, args.model_inputs = 2, 2, ['1x128x128']
        args.cuda_batch, args.retina_batch = 4, 2
    torch.set_num_threads(args.threads)
    console = Console(width=150)  # full tables also when written to a file
    from mmrednet.ops import cpu
    isa = cpu.isa() if cpu.AVAILABLE else 'portable (no compiled kernels)'
    console.print(f'device {args.device}, torch {torch.__version__}, '
                  f'{torch.get_num_threads()} threads, CPU kernels: {isa}')
    kernel_rows = benchmark_kernels(args.batch, args.repeat) if args.device == 'cpu' else []
    op_rows = benchmark_op(args.batch, args.device, args.repeat)
    model_rows = [] if args.skip_model else benchmark_models(args.model_inputs, args.device,
                                                             args.repeat)
    _print(console, kernel_rows, op_rows, model_rows)
    if args.out_dir:
        _write(args.out_dir, kernel_rows, op_rows, model_rows)
        console.print(f'wrote {args.out_dir}/kernels.csv, op.csv, model.csv, benchmark.png')
    if torch.cuda.is_available() and not args.skip_cuda:
        run_cuda_section(args, console)
    elif not args.skip_cuda:
        from mmrednet.ops import cuda_traffic
        cuda_traffic.print_tables(console, args.cuda_batch)


if __name__ == '__main__':
    main()
