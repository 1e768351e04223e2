"""FPN whose 3x3 output convolutions are involutions.

The "involution neck" of the original detectors and segmentors (Li et al.,
CVPR 2021; github.com/d-li14/involution).
"""
from typing import Optional

from mmdet.models.necks import FPN

from mmrednet.registry import MODELS

from ..layers import Involution


@MODELS.register_module()
class InvolutionFPN(FPN):
    """mmdet's FPN with involutions as the output convs of the backbone levels.

    Laterals and the extra (stride-2) convs stay convolutions, as in the
    original. The module names match the official checkpoints
    (``fpn_convs.{i}.conv1.conv.weight``, ...). It only returns a tuple of
    maps, so mmseg segmentors use it as they use mmseg's FPN.

    Args:
        *args: Those of mmdet's :class:`~mmdet.models.necks.FPN`.
        **kwargs: Those of mmdet's FPN, by keyword.
        involution_cfg (dict, optional): Options of the involutions
            (:class:`~mmrednet.models.Involution`); ``kernel_size`` defaults
            to 7 as in the original.
    """

    def __init__(self, *args, involution_cfg: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = {'kernel_size': 7, **(involution_cfg or {})}
        for i in range(self.backbone_end_level - self.start_level):
            self.fpn_convs[i] = Involution(self.out_channels, **cfg)
