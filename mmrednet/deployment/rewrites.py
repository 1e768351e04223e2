"""Every export rewrite: layers that an exporter cannot keep shape-generic or compiles
wrongly, replaced by equivalent ones.

The exporters export a rewritten copy and check it against the original model
(``pipeline.check_against_pytorch``):

- ``export_friendly`` (both backends): mmseg's ``Upsample`` as ``nn.Upsample``.
- ``shape_generic`` (AOTInductor, dynamic shapes): ceil-mode average pools as
  ``CeilModeAvgPool2d``.

and one that only the deploy benchmark makes, on an exported program:
``composed`` (the fused involution as the composition it replaces).
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn


def _rewrite_mmseg_upsample(model: nn.Module) -> None:
    """mmseg's ``Upsample`` computes its size as ``int(size * scale_factor)``: export
    turns that into the traced size, and at any other input size the FPN head's
    levels would be resized wrongly (no error, wrong logits). ``nn.Upsample`` with
    the same integral factor gives identical results and stays symbolic.
    """
    try:
        from mmseg.models.utils import Upsample
    except ImportError:  # mmseg is optional (the [seg] extra): no mmseg model to rewrite
        return
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if (isinstance(child, Upsample) and child.size is None
                    and isinstance(child.scale_factor, (int, float))
                    and float(child.scale_factor).is_integer()):
                setattr(parent, name, nn.Upsample(scale_factor=child.scale_factor,
                                                  mode=child.mode,
                                                  align_corners=child.align_corners))


def export_friendly(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with the rewrites both backends need (the original is untouched)."""
    model = copy.deepcopy(model)
    _rewrite_mmseg_upsample(model)
    return model


class CeilModeAvgPool2d(nn.Module):
    """``nn.AvgPool2d(s, s, ceil_mode=True)`` (no padding) as zero padding to a multiple
    of ``s``, window sums and a division by each window's count of input pixels.

    torch 2.14's AOTInductor miscompiles ceil-mode average pooling under dynamic
    shapes: at odd sizes it reads past its buffers (garbage, no error). RedNet's
    strided involutions pool their kernel branch that way.
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        pad = (0, (-x.shape[-1]) % s, 0, (-x.shape[-2]) % s)
        sums = F.avg_pool2d(F.pad(x, pad), s, s, divisor_override=1)
        counts = F.avg_pool2d(F.pad(x.new_ones(1, 1, *x.shape[-2:]), pad), s, s,
                              divisor_override=1)
        return sums / counts


def shape_generic(module: nn.Module) -> nn.Module:
    """``module`` with its ceil-mode average pools replaced in place (``CeilModeAvgPool2d``)."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if (type(child) is nn.AvgPool2d and child.ceil_mode and child.padding in (0, (0, 0))
                    and child.kernel_size == child.stride and isinstance(child.stride, int)
                    and child.divisor_override is None):
                setattr(parent, name, CeilModeAvgPool2d(child.stride))
    return module


def composed(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with every ``mmrednet::involution_fused`` as its composition: the span's
    1x1 convolution writing the kernel, then ``mmrednet::involution`` (the op's portable
    kernel, ``mmrednet.ops.portable.fused_forward``). The same function; the deploy
    benchmark's measure of what the fused op saves a package."""
    from ..ops import portable
    return program.run_decompositions(
        {torch.ops.mmrednet.involution_fused.default: portable.fused_forward})
