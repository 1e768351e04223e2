"""Training memory and step time of RedNet-50 (memory saving on/off) and ResNet-50.

``tools/benchmark_memory.py`` is its command line; the models are
:mod:`.memory_models`, the tables and files :mod:`.memory_report`.

RedNet-50 variants per section, each measured in its own process so that
allocations never mix, on the same input and batch, in one run:

* ``after``: RedNet-50 as shipped: every involution keeps only its input and
  regenerates its kernel in backward (``regenerate_kernel=True``), and the
  stem is recomputed in backward (``recompute_stem=True``);
* ``before``: RedNet-50 with both off (every involution keeps its generated
  kernel and its kernel branch's activations, the stem keeps its activations);
* ``stem-kept`` (not run by default): kernel regeneration on, stem
  recomputation off, to tell the two apart;
* ``cl-outputs`` (not run by default): ``after`` returning channels-last maps
  (``channels_last_outputs=True``): the neck then keeps the stages' own
  outputs instead of NCHW copies. Not measured for Faster R-CNN, whose RoI
  head needs NCHW maps on CPU;
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
* ``RSS MB``: how far the worker's resident memory rose during the first
  step above its level with the model built (Linux: the high-water mark
  ``VmHWM``, reset through ``/proc/self/clear_refs``; NaN elsewhere): the
  step's peak plus what training adds to the process for good (momentum
  buffers, the caches of malloc and oneDNN). Measured on the first step
  because later ones reuse memory the process already holds;
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

Targets (every section): RedNet-50 peak <= 0.9x ResNet-50's (the allocator's);
involution MB after <= 60% of before; step time after <= 1.10 x before.
"""
import math
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Callable, List, Sequence, Tuple

import torch
from rich.console import Console

from mmrednet.models import Involution, RedNet
from mmrednet.utils import (
    interleaved_times,
    peak_memory,
    retained_memory,
    saved_bytes_inside,
    time_call,
)

from .memory_models import backbone, detector

VARIANTS = ('after', 'before', 'ResNet-50', 'stem-kept', 'cl-outputs')
DEFAULT_VARIANTS = VARIANTS[:3]
SECTIONS = ('backbone', 'retinanet', 'faster_rcnn')
# Pairs the benchmark does not measure: mmcv's CPU RoIAlign misreads channels-last maps.
UNSUPPORTED = {('faster_rcnn', 'cl-outputs')}
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
    rss_mb: float
    kept_mb: float
    involution_mb: float
    step_ms: float
    paired_time_ratio: float = float('nan')


def _resident_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        return int(re.search(rf'^{field}:\s+(\d+) kB', f.read(), re.MULTILINE).group(1))


def resident_peak(fn: Callable[[], object]) -> float:
    """Bytes by which this process's resident memory peaked above its level before ``fn()``.

    Linux only (the high-water mark of ``/proc/self/status``, reset by writing 5
    to ``/proc/self/clear_refs``); NaN where these files are missing.
    """
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        before = _resident_kib('VmRSS')
    except OSError:
        return math.nan
    fn()
    # The kernel updates the high-water mark lazily (not when an allocator
    # returns pages with madvise), so it can read below the level measured at
    # the start; the peak is at least that level.
    return (max(_resident_kib('VmHWM'), before) - before) * 1024.0


def involution_saved_bytes(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> int:
    """Bytes the involution layers of ``model`` add to what autograd keeps for backward."""
    saved, out = saved_bytes_inside(model, loss, lambda m: isinstance(m, Involution))
    out.backward()  # free the graph (and check it still works)
    return saved


def measure(job: Job) -> Row:
    """Build one model and measure it (runs in a fresh worker process)."""
    torch.set_num_threads(job.threads)
    torch.manual_seed(0)
    if job.section == 'backbone':
        model, loss = backbone(job.variant, job.device, job.batch, job.size)
    else:
        model, loss = detector(job.section, job.variant, job.device, job.batch, job.size)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-4, momentum=0.9)

    def step() -> None:
        loss().backward()
        optimizer.step()
        # Gradients are allocated inside the step and freed after it (mmengine
        # zeroes them to None), so every step starts from parameters and
        # optimizer state only.
        optimizer.zero_grad(set_to_none=True)

    rss = resident_peak(step)  # also the warm-up: momentum buffers, lazy state
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
               peak / MB, rss / MB, kept / MB, involution / MB, seconds * 1e3, paired)


def _set_memory_saving(model: torch.nn.Module, on: bool) -> None:
    """Switch kernel regeneration and stem recomputation of every RedNet part of ``model``."""
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
