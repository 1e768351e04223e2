"""``mmrednet::involution`` and ``mmrednet::involution_fused`` in standard ONNX ops
(opset 18), written in onnxscript.

ONNX has no im2col, so the op is spelled as a sum over the ``K*K`` taps: the
zero-padded input, viewed as ``(N, G, C/G, Hp, Wp)``, is cut by one strided
``Slice`` per tap (the pixels that tap reads for every output position), each
multiplied by that tap's per-pixel kernel ``(N, G, 1, Ho, Wo)`` (broadcast over
the group's channels) and accumulated with ``Add``. In onnxruntime (CPU, 2
threads) this ran the RedNet-50 stages' 7x7 involution layers 2-4x faster (medians) than
a ``Pad + Gather`` (im2col-like) form (``tools/benchmark_deploy.py --sections op``).

The fused op (the kernel generated from ``hidden`` by its span, a 1x1
convolution, inside the op) is that 1x1 convolution as an ONNX ``Conv`` (with
its bias), then the same taps: ONNX has no way to keep the kernel out of
memory, so its graph is the composition the fused op replaces.

Only static ints enter the graph (the kernel size, groups and channels come
from the static dims and the op's arguments, the slice ends count from the end
of the padded axis), so batch and spatial size stay dynamic.
"""
from typing import Callable, Sequence, Tuple

import torch
from onnxscript import opset18 as op

OPSET = 18
# A Slice end past any axis length: "to the end of the axis".
_TO_END = 2**62
# ``form(input, kernel, (G, Kh, Kw), stride, padding, dilation)``: the involution of
# ``input`` by a kernel ``(N, G, Kh, Kw, Ho, Wo)`` whose static sizes are given.
InvolutionForm = Callable[..., object]


def _consts(*values: int):
    return op.Constant(value_ints=list(values))


def grouped_padded_input(input, groups: int, padding: Sequence[int]):
    """``(N, C, H, W) -> (N, G, C/G, H + 2ph, W + 2pw)``, zero padded."""
    ph, pw = padding
    padded = op.Pad(input, _consts(0, 0, ph, pw, 0, 0, ph, pw))
    shape = op.Concat(op.Shape(padded, start=0, end=1),
                      _consts(groups, input.shape[1] // groups),
                      op.Shape(padded, start=2), axis=0)
    return op.Reshape(padded, shape)


def tap_slices(input, kernel, kernel_shape: Tuple[int, int, int], stride: Sequence[int],
               padding: Sequence[int], dilation: Sequence[int]):
    """The involution as one strided ``Slice`` per tap: ``(N, C, H, W)`` and the kernel
    ``(N, G, Kh, Kw, Ho, Wo)``, ``kernel_shape`` its static ``(G, Kh, Kw)``, ->
    ``(N, C, Ho, Wo)``.

    Tap ``(u, v)`` reads padded rows ``u*dh + i*sh`` for ``i < Ho``. Slicing
    from ``u*dh`` to ``(Kh - 1 - u)*dh`` before the end of the padded axis with
    step ``sh`` yields exactly ``Ho`` rows, for any input height.
    """
    groups, kh, kw = kernel_shape
    taps = grouped_padded_input(input, groups, padding)
    # (N, G, Kh, Kw, Ho, Wo) -> (N, G, 1, Kh*Kw, Ho, Wo): one Gather per tap
    # gives the tap's kernel, broadcastable over the group's channels.
    kernel = op.Reshape(kernel, op.Concat(op.Shape(kernel, start=0, end=2),
                                          _consts(1, kh * kw), op.Shape(kernel, start=4),
                                          axis=0))
    axes, steps = _consts(3, 4), _consts(*stride)
    out = None
    for u in range(kh):
        for v in range(kw):
            starts = _consts(u * dilation[0], v * dilation[1])
            ends = _consts(-(kh - 1 - u) * dilation[0] or _TO_END,
                           -(kw - 1 - v) * dilation[1] or _TO_END)
            tap = op.Mul(op.Slice(taps, starts, ends, axes, steps),
                         op.Gather(kernel, op.Constant(value_int=u * kw + v), axis=3))
            out = tap if out is None else op.Add(out, tap)
    shape = op.Concat(op.Shape(input, start=0, end=2), op.Shape(kernel, start=4), axis=0)
    return op.Reshape(out, shape)


def span_kernel(hidden, weight, bias, groups: int, kernel_size: Sequence[int]):
    """The fused op's span as an ONNX ``Conv``: ``hidden`` ``(N, C_hidden, Ho, Wo)`` by
    ``weight`` ``(G*Kh*Kw, C_hidden)`` (+ ``bias``, or None) -> the kernel
    ``(N, G, Kh, Kw, Ho, Wo)``."""
    # (G*Kh*Kw, C_hidden, 1, 1); folded into the initializer when weight is a parameter.
    conv_weight = op.Unsqueeze(weight, _consts(2, 3))
    kernel = (op.Conv(hidden, conv_weight) if bias is None else
              op.Conv(hidden, conv_weight, bias))
    shape = op.Concat(op.Shape(hidden, start=0, end=1), _consts(groups, *kernel_size),
                      op.Shape(hidden, start=2), axis=0)
    return op.Reshape(kernel, shape)


def translations(form: InvolutionForm = tap_slices) -> Tuple[Callable, Callable]:
    """The translations of ``mmrednet::involution`` and ``mmrednet::involution_fused``
    through the involution ``form`` (default: ``tap_slices``)."""

    def involution_onnx(input, weight, stride: Sequence[int], padding: Sequence[int],
                        dilation: Sequence[int]):
        """``(N, C, H, W), (N, G, Kh, Kw, Ho, Wo) -> (N, C, Ho, Wo)``."""
        return form(input, weight, (weight.shape[1], weight.shape[2], weight.shape[3]), stride,
                    padding, dilation)

    def involution_fused_onnx(input, hidden, weight, bias, kernel_size: Sequence[int],
                              stride: Sequence[int], padding: Sequence[int],
                              dilation: Sequence[int]):
        """``(N, C, H, W), (N, C_hidden, Ho, Wo), (G*Kh*Kw, C_hidden), (G*Kh*Kw,) or None
        -> (N, C, Ho, Wo)``: the span's ``Conv``, then ``form``."""
        groups = weight.shape[0] // (kernel_size[0] * kernel_size[1])
        kernel = span_kernel(hidden, weight, bias, groups, kernel_size)
        return form(input, kernel, (groups, *kernel_size), stride, padding, dilation)

    return involution_onnx, involution_fused_onnx


def custom_translation_table(form: InvolutionForm = tap_slices) -> dict:
    """``custom_translation_table`` of ``torch.onnx.export(..., dynamo=True)``: both ops
    through the involution ``form`` (default: ``tap_slices``, the one the exporter uses)."""
    import mmrednet.ops.library  # noqa: F401  (registers the torch.ops.mmrednet ops)
    involution, fused = translations(form)
    return {torch.ops.mmrednet.involution.default: involution,
            torch.ops.mmrednet.involution_fused.default: fused}
