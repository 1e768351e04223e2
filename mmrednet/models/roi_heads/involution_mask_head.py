"""FCN mask head whose convs are involutions.

The mask part of the "involution head" of the original Mask R-CNN models
(Li et al., CVPR 2021; github.com/d-li14/involution).
"""
from typing import Optional

from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmengine.model import ModuleList
from torch import nn

from mmrednet.registry import MODELS

from ..layers import Involution


@MODELS.register_module()
class InvolutionFCNMaskHead(FCNMaskHead):
    """mmdet's :class:`~mmdet.models.roi_heads.FCNMaskHead` with involution convs.

    Each of the ``num_convs`` 3x3 ConvModules becomes
    ``Sequential(Involution(C, kernel_size), ReLU)``, as in the original, whose
    keys this matches (``convs.{i}.0.conv1.conv.weight``, ...). Upsampling,
    logits, targets, loss and mask pasting are mmdet's. As in the original the
    involutions keep their default init (mmdet's head only initializes the
    upsample and logits layers).

    Args:
        involution_cfg (dict, optional): Extra options of the involutions
            (:class:`~mmrednet.models.Involution`); ``kernel_size`` defaults to 7.
        **kwargs: Those of mmdet's ``FCNMaskHead``; ``conv_out_channels`` must
            equal ``in_channels`` (involution maps C -> C), ``conv_kernel_size``,
            ``conv_cfg`` and ``norm_cfg`` do not apply to the involutions.

    Shape:
        ``(R, C, S, S) -> (R, num_classes, 2S, 2S)`` for ``R`` RoIs (deconv upsampling).
    """

    def __init__(self, involution_cfg: Optional[dict] = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if self.num_convs and self.conv_out_channels != self.in_channels:
            raise ValueError('InvolutionFCNMaskHead: involution maps C -> C, so '
                             f'conv_out_channels ({self.conv_out_channels}) must equal '
                             f'in_channels ({self.in_channels})')
        cfg = {'kernel_size': 7, **(involution_cfg or {})}
        # Replaces the ConvModules mmdet's __init__ just built (it has no
        # separate builder to override); their construction is a one-off cost.
        # In place, as mmdet's ConvModule: the op's output is a tensor of its
        # own, which autograd lets the ReLU overwrite (the op's backward does
        # not read its output).
        self.convs = ModuleList(
            nn.Sequential(Involution(self.in_channels, **cfg), nn.ReLU(inplace=True))
            for _ in range(self.num_convs))
