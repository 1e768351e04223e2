"""The fused involution op against its composition, per RedNet-50 involution shape (CPU).

The composition is what the involution layer computed before the fused op: the
span (a 1x1 convolution, through torch / oneDNN) writes the kernel, then the
involution op reads it. Forward: ``span conv + involution`` against
``involution_fused``. Backward, as autograd runs each (the composition keeps
the kernel its forward wrote; the fused op generates it again):
``involution_grad_input + involution_grad_weight + the span conv's backward``
against ``involution_fused_grad_input + involution_fused_grad_span``.

Every round times each call once, interleaved, in reversed order every other
round (:func:`mmrednet.utils.interleaved_times`); a ratio is the median over
rounds of the paired ratios (composed time / fused time), so load from other
processes affects both sides of a pair alike. With ``breakdown`` the parts
are timed in the same rounds: the composition's span conv, op forward,
grad_input, grad_weight and conv backward, the fused op's grad_input and
grad_span, and the span's product over the whole map as one ``torch.mm`` (the
arithmetic the fused forward cannot avoid, at torch's best GEMM rate).
"""
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F

from mmrednet.utils import interleaved_times
from mmrednet.utils.profiling import median

TARGET = 1.5  # composed time / fused time, forward and backward
LAYOUTS = ('channels_last', 'contiguous')
KERNEL, GROUP_CHANNELS, REDUCTION = 7, 16, 4  # RedNet's bottleneck involution


@dataclass(frozen=True)
class Shape:
    """A bottleneck involution of RedNet-50: its channels, input size and stride."""
    input: str  # the model input it comes from, e.g. '1x224x224'
    channels: int
    height: int
    width: int
    stride: int = 1

    @property
    def name(self) -> str:
        return (f'{self.channels}x{self.height}x{self.width}' +
                (f'/s{self.stride}' if self.stride > 1 else ''))


def rednet50_shapes(batch: int, sizes: Sequence[Sequence[int]], strided: bool) -> List[Shape]:
    """The bottleneck involutions of RedNet-50 for inputs of ``sizes`` (H, W).

    Stage s (64, 128, 256, 512 channels) runs at the input size / 2**(s+1)
    (rounded up, as the stem and the strided blocks round); with ``strided``
    also the stride-2 involution opening stages 2-4 (the previous stage's size).
    """
    shapes = []
    for height, width in sizes:
        h, w = -(-height // 4), -(-width // 4)  # after the stem and its max pool
        for stage, channels in enumerate((64, 128, 256, 512)):
            if stage:
                if strided:
                    shapes.append(Shape(f'{batch}x{height}x{width}', channels, h, w, 2))
                h, w = -(-h // 2), -(-w // 2)
            shapes.append(Shape(f'{batch}x{height}x{width}', channels, h, w))
    return shapes


@dataclass
class FusedRow:
    input: str
    shape: str
    layout: str
    pass_: str  # 'forward' or 'backward'
    composed_ms: float
    fused_ms: float
    ratio: float  # median over rounds of composed / fused
    parts: str  # 'name=ms; ...' (with breakdown)


class Problem:
    """The tensors of one shape in one layout, and the calls that time it."""

    def __init__(self, shape: Shape, batch: int, layout: str, dtype=torch.float32):
        c, s, k = shape.channels, shape.stride, KERNEL
        ho, wo = -(-shape.height // s), -(-shape.width // s)
        rows, hidden = c // GROUP_CHANNELS * k * k, c // REDUCTION
        fmt = torch.channels_last if layout == 'channels_last' else torch.contiguous_format

        def new(*size):
            return torch.randn(*size, dtype=dtype).contiguous(memory_format=fmt)

        self.x, self.h = new(batch, c, shape.height, shape.width), new(batch, hidden, ho, wo)
        self.grad_out = new(batch, c, ho, wo)
        self.weight = torch.randn(rows, hidden, dtype=dtype) / hidden**0.5
        self.bias = torch.randn(rows, dtype=dtype)
        self.geometry = ([k, k], [s, s], [k // 2, k // 2], [1, 1])
        self.kernel = self.span()  # the composition's kernel, kept from its forward

    def span(self) -> torch.Tensor:
        """The composition's kernel ``(N, G, K, K, Ho, Wo)`` (pixel-major when channels-last)."""
        kernel = F.conv2d(self.h, self.weight[:, :, None, None], self.bias)
        return kernel.unflatten(1, (-1, KERNEL, KERNEL))

    def calls(self, breakdown: bool) -> Dict[str, Callable[[], object]]:
        ops, (_, *geo), geometry = torch.ops.mmrednet, self.geometry, self.geometry
        x, h, w, b, go, kernel = self.x, self.h, self.weight, self.bias, self.grad_out, self.kernel

        def conv_backward():
            grad_kernel = ops.involution_grad_weight(go, x, kernel, *geo).flatten(1, 3)
            return span_backward(grad_kernel)

        def span_backward(grad_kernel):
            return torch.ops.aten.convolution_backward(
                grad_kernel, h, w[:, :, None, None], [w.shape[0]], [1, 1], [0, 0], [1, 1],
                False, [0, 0], 1, [True, True, True])

        calls = dict(
            composed_forward=lambda: ops.involution(x, self.span(), *geo),
            fused_forward=lambda: ops.involution_fused(x, h, w, b, *geometry),
            composed_backward=lambda: (ops.involution_grad_input(go, x, kernel, *geo),
                                       conv_backward()),
            fused_backward=lambda: (ops.involution_fused_grad_input(go, x, h, w, b, *geometry),
                                    ops.involution_fused_grad_span(go, x, h, w, *geometry)))
        if breakdown:
            grad_kernel = ops.involution_grad_weight(go, x, kernel, *geo).flatten(1, 3)
            h_mat = h.permute(1, 0, 2, 3).reshape(h.shape[1], -1)
            calls.update({
                'span conv': self.span,
                'op forward': lambda: ops.involution(x, kernel, *geo),
                'op grad_input': lambda: ops.involution_grad_input(go, x, kernel, *geo),
                'op grad_weight': lambda: ops.involution_grad_weight(go, x, kernel, *geo),
                'conv backward': lambda: span_backward(grad_kernel),
                'fused grad_input': lambda: ops.involution_fused_grad_input(
                    go, x, h, w, b, *geometry),
                'fused grad_span': lambda: ops.involution_fused_grad_span(go, x, h, w, *geometry),
                'span GEMM': lambda: torch.mm(w, h_mat),
            })
        return calls


def benchmark_fused(shapes: Sequence[Shape], batch: int, rounds: int, breakdown: bool = False,
                    layouts: Sequence[str] = LAYOUTS,
                    progress: Callable = iter) -> List[FusedRow]:
    """Forward and backward rows for each shape and layout (see the module's docstring)."""
    rows = []
    for shape, layout in progress([(s, lay) for s in shapes for lay in layouts]):
        problem = Problem(shape, batch, layout)
        calls = problem.calls(breakdown)
        for fn in calls.values():
            fn()  # warm-up
        times = interleaved_times(calls, rounds)
        parts = '; '.join(f'{name}={median(t) * 1e3:.2f}' for name, t in times.items()
                          if not name.startswith(('composed_', 'fused_')))
        for pass_ in ('forward', 'backward'):
            composed, fused = times[f'composed_{pass_}'], times[f'fused_{pass_}']
            ratio = median([c / f for c, f in zip(composed, fused, strict=True)])
            rows.append(FusedRow(shape.input, shape.name, layout, pass_, median(composed) * 1e3,
                                 median(fused) * 1e3, ratio, parts))
    return rows
