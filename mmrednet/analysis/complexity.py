"""Params and FLOPs of mmdet/mmseg/mmpretrain models with involution counted.

mmengine's FLOP counter (``mmengine.analysis``, fvcore's jit-trace counter)
only counts ops it has a handle for; a custom op such as ``mmrednet::involution``
is skipped with a warning, which would leave out the multiply-adds that
replace every 3x3 convolution. :func:`flop_analyzer` adds handles for it and
for the fused op ``mmrednet::involution_fused`` the involution layer runs.
Convention (mmengine's for convolutions): one multiply-add is one FLOP.
"""
from collections import Counter
from typing import Any, Dict, List

import torch
from mmengine.analysis import FlopAnalyzer
from torch import Tensor, nn

INVOLUTION_OP = 'mmrednet::involution'
FUSED_OP = 'mmrednet::involution_fused'


def _shape(value: Any) -> List[int]:
    return list(value.type().sizes())


def involution_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Multiply-adds of one involution: ``N * C * Ho * Wo * K * K``.

    ``inputs`` are the traced op's arguments ``(x (N, C, H, W), w (N, G, K, K,
    Ho, Wo), stride, padding, dilation)``, ``outputs[0]`` is ``(N, C, Ho, Wo)``.
    Each output element sums K*K products over the kernel taps (1-D analogue:
    ``N * C * Lo * K``).
    """
    out = _shape(outputs[0])
    weight = _shape(inputs[1])
    spatial = len(out) - 2
    taps = 1
    for k in weight[2:2 + spatial]:
        taps *= k
    total = taps
    for size in out:
        total *= size
    return total


def _int_list(value: Any) -> List[int]:
    """The value of a traced ``int[]`` argument: a constant, or a list built of constants."""
    constant = value.toIValue()
    if constant is not None:
        return list(constant)
    return [item.toIValue() for item in value.node().inputs()]


def involution_fused_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    """Multiply-adds of one fused involution, as the span convolution and the
    involution it fuses would be counted (so a model's figures do not change):
    ``conv`` ``N * Ho * Wo * C_hidden * G*Kh*Kw`` (the span, a 1x1 convolution:
    a GEMM per pixel; its bias is not counted, as for convolutions) and
    ``involution`` ``N * C * Ho * Wo * Kh * Kw``.

    ``inputs`` are the traced op's arguments ``(x (N, C, H, W), hidden (N,
    C_hidden, Ho, Wo), weight (G*Kh*Kw, C_hidden), bias, kernel_size, stride,
    padding, dilation)`` (1-D problems come as ``Kh = H = Ho = 1``),
    ``outputs[0]`` is ``(N, C, Ho, Wo)``.
    """
    out = _shape(outputs[0])
    weight = _shape(inputs[2])
    taps = 1
    for k in _int_list(inputs[4]):
        taps *= k
    pixels = out[0]
    for size in out[2:]:
        pixels *= size
    return Counter(conv=pixels * weight[0] * weight[1], involution=pixels * out[1] * taps)


def flop_analyzer(model: nn.Module, inputs: Any) -> FlopAnalyzer:
    """mmengine's :class:`FlopAnalyzer` with the involution handles registered."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(INVOLUTION_OP, involution_flop_jit)
    analyzer.set_op_handle(FUSED_OP, involution_fused_flop_jit)
    return analyzer


def count_params(model: nn.Module, trainable_only: bool = True) -> int:
    """Parameters of ``model``; by default those with ``requires_grad``.

    The original's model-zoo tables came from mmcv's counter, which counts
    trainable parameters only: the frozen stem and first stage
    (``frozen_stages=1``) are not in them.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _TensorForward(nn.Module):
    """``forward(x)`` of an mmdet/mmseg/mmpretrain model without post-processing (for tracing).

    One-stage detectors, segmentors and classifiers run in ``mode='tensor'``. Two-stage
    detectors run like mmdet 2.x's ``forward_dummy``, which the original
    tables were measured with: backbone, neck, the RPN head's outputs, and the
    RoI head on ``proposals`` fixed random boxes (the first 100 of them through
    the mask head) instead of the RPN's data-dependent post-processing.
    """

    def __init__(self, model: nn.Module, height: int, width: int, proposals: int) -> None:
        super().__init__()
        self.model = model
        self.rois = None
        if hasattr(model, 'roi_head'):
            gen = torch.Generator().manual_seed(0)
            size = torch.tensor([width, height])
            xy = torch.rand(proposals, 2, generator=gen) * size * 0.8
            wh = torch.rand(proposals, 2, generator=gen) * size * 0.2 + 8
            self.rois = torch.cat([xy, xy + wh], dim=1)

    def forward(self, x: Tensor) -> Any:
        if self.rois is None:
            return self.model(x, None, mode='tensor')
        from mmengine.structures import InstanceData
        feats = self.model.extract_feat(x)
        outs = self.model.rpn_head(feats) if self.model.with_rpn else ()
        rois = [InstanceData(bboxes=self.rois.to(x.device))]
        return outs + tuple(self.model.roi_head(feats, rois))


def model_complexity(model: nn.Module, height: int, width: int,
                     proposals: int = 1000) -> Dict[str, Any]:
    """FLOPs (one image ``3 x height x width``) and params of an mmdet/mmseg/mmpretrain model.

    Args:
        model (nn.Module): A built detector, segmentor or classifier; put in eval mode.
        height (int): Input height.
        width (int): Input width.
        proposals (int): RoIs fed to a two-stage detector's RoI head.

    Returns:
        dict: ``flops`` (multiply-adds), ``params`` (trainable), ``params_all``,
        ``by_operator`` (FLOPs per op kind), ``unsupported`` (skipped op kinds and
        their counts).
    """
    model.eval()
    wrapped = _TensorForward(model, height, width, proposals)
    x = torch.randn(1, 3, height, width)
    with torch.no_grad():
        analyzer = flop_analyzer(wrapped, (x, ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        flops = analyzer.total()
    return dict(flops=flops, params=count_params(model), params_all=count_params(model, False),
                by_operator=dict(analyzer.by_operator()),
                unsupported=dict(analyzer.unsupported_ops()))
