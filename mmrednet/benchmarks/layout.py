"""Layout work inside the backbones, counted with torch.profiler: copies and convolution paths.

For each backbone of :func:`.backbones.backbone_models` and each mode
(inference; training step: forward and backward), one profiled run after a
warm-up, counting:

* ``conversions``: RedNet's layout changes (``to_memory_format``: its forward
  ``_ToMemoryFormat`` and backward ``_ToMemoryFormatBackward`` nodes);
* ``copies`` and ``copied M``: every ``aten::copy_`` (layout changes, the copies
  convolutions make of arguments in another layout, weight reorders) and the
  millions of elements they write;
* ``oneDNN convs`` and ``slow convs``: forward convolutions that run oneDNN
  (``aten::mkldnn_convolution``) and those that fall back to torch's im2col +
  GEMM path (``aten::_slow_conv2d_forward``).

Counts and elements are exact and the same on every run of a given torch;
the times beside them (``copy ms``, ``slow conv ms``: profiler self time) are
what the profiled run took and move with the machine's load.
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import torch
from torch.profiler import ProfilerActivity, profile

from .backbones import RESNET_CL, parse_input

CONVERSIONS = ('_ToMemoryFormat', '_ToMemoryFormatBackward')


@dataclass
class LayoutRow:
    model: str
    mode: str
    input: str
    conversions: int
    copies: int
    copied_melems: float  # millions of elements written by aten::copy_
    copy_ms: float
    onednn_convs: int
    slow_convs: int
    slow_conv_ms: float


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def profile_counts(run: Callable[[], None]) -> Dict[str, float]:
    """Run ``run()`` once under torch.profiler and count its layout work (see module doc)."""
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        run()
    counts = dict(conversions=0, copies=0, copied_melems=0.0, copy_ms=0.0, onednn_convs=0,
                  slow_convs=0, slow_conv_ms=0.0)
    for event in prof.events():
        if event.name in CONVERSIONS:
            counts['conversions'] += 1
        elif event.name == 'aten::copy_':
            counts['copies'] += 1
            counts['copied_melems'] += _numel(event.input_shapes[0]) / 1e6
            counts['copy_ms'] += event.self_cpu_time_total / 1e3
        elif event.name == 'aten::mkldnn_convolution':
            counts['onednn_convs'] += 1
        elif event.name == 'aten::_slow_conv2d_forward':
            counts['slow_convs'] += 1
            counts['slow_conv_ms'] += event.cpu_time_total / 1e3
    return counts


def _modes(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, Callable[[], None]]:
    def inference() -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    def train_step() -> None:
        model.train()
        model.zero_grad(set_to_none=True)
        sum(o.float().mean() for o in model(x)).backward()

    return {'inference': inference, 'train step': train_step}


def benchmark_layout(models: Dict[str, torch.nn.Module], inference_input: str,
                     train_input: str) -> List[LayoutRow]:
    """Profile counts of every model at inference on one input and a training step on another."""
    rows = []
    for name, model in models.items():
        for mode, text in (('inference', inference_input), ('train step', train_input)):
            batch, height, width = parse_input(text)
            x = torch.randn(batch, 3, height, width)
            if name == RESNET_CL:  # a model run channels-last throughout gets such input
                x = x.contiguous(memory_format=torch.channels_last)
            run = _modes(model, x)[mode]
            run()  # warm-up: oneDNN's first call plans and packs
            rows.append(LayoutRow(name, mode, f'{batch}x3x{height}x{width}',
                                  **profile_counts(run)))
    return rows
