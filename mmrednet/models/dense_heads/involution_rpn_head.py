"""RPN head whose 3x3 conv is an involution.

The RPN part of the "involution head" of the original Faster and Mask R-CNN
models (Li et al., CVPR 2021; github.com/d-li14/involution).
"""
from typing import Optional

from mmdet.models.dense_heads import RPNHead
from mmdet.utils import MultiConfig

from mmrednet.registry import MODELS

from ..layers import Involution

# Only the two 1x1 predictors get N(0, 0.01): the original's ``normal_init`` of
# the involution was a no-op (it has no ``weight``), so the kernel-generating
# convs keep their default init. ``layer='Conv2d'`` would reach into them.
_PREDICTOR_INIT = dict(type='Normal', layer=[], std=0.01,
                       override=[dict(name='rpn_cls'), dict(name='rpn_reg')])


@MODELS.register_module()
class InvolutionRPNHead(RPNHead):
    """mmdet's :class:`~mmdet.models.dense_heads.RPNHead` with ``rpn_conv`` an involution.

    Forward, losses and post-processing are mmdet's; only the shared 3x3 conv
    (C -> C, followed by mmdet's ReLU) becomes ``Involution(C, kernel_size)``.
    Its keys match the official checkpoints (``rpn_conv.conv1.conv.weight``,
    ``rpn_conv.conv2.conv.bias``, ...).

    Args:
        in_channels (int): Channels ``C`` of every input level.
        involution_cfg (dict, optional): Extra options of the involution
            (:class:`~mmrednet.models.Involution`); ``kernel_size`` defaults to 7.
        init_cfg (dict or list[dict]): Defaults to N(0, 0.01) on ``rpn_cls`` and
            ``rpn_reg`` only.
        **kwargs: Those of mmdet's ``RPNHead`` (``feat_channels`` must equal
            ``in_channels``, ``num_convs`` must be 1).

    Shape:
        Per level: ``(N, C, H, W) -> ((N, A, H, W), (N, 4A, H, W))`` with ``A``
        anchors per position.
    """

    def __init__(self,
                 in_channels: int,
                 involution_cfg: Optional[dict] = None,
                 init_cfg: MultiConfig = _PREDICTOR_INIT,
                 **kwargs) -> None:
        self.involution_cfg = {'kernel_size': 7, **(involution_cfg or {})}
        super().__init__(in_channels, init_cfg=init_cfg, **kwargs)

    def _init_layers(self) -> None:
        """Build mmdet's layers, then swap the 3x3 conv for an involution."""
        if self.num_convs != 1 or self.feat_channels != self.in_channels:
            raise ValueError('InvolutionRPNHead: involution maps C -> C, so num_convs must be 1 '
                             f'and feat_channels ({self.feat_channels}) must equal in_channels '
                             f'({self.in_channels})')
        super()._init_layers()
        self.rpn_conv = Involution(self.in_channels, **self.involution_cfg)
