"""RedNet (Li et al., CVPR 2021): ResNet with involution in the stem and every bottleneck."""
from typing import Optional, Sequence, Tuple

import torch
from mmcv.cnn import ConvModule, build_conv_layer, build_norm_layer
from mmengine.model import BaseModule, Sequential
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from mmrednet.registry import MODELS

from ..layers import Involution
from ..layers.memory_format import to_memory_format
from ..layers.recompute import checkpoint_module


class Bottleneck(BaseModule):
    """1x1 conv, ``K x K`` involution (carrying stride and dilation), 1x1 conv.

    Module names follow the official checkpoints: ``conv1/bn1``, ``conv2``
    (the involution), ``bn2``, ``conv3/bn3``, ``downsample``.
    """

    expansion = 4

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 dilation: int = 1,
                 downsample: Optional[nn.Module] = None,
                 style: str = 'pytorch',
                 with_cp: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 involution_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        mid = out_channels // self.expansion
        conv1_stride, conv2_stride = (1, stride) if style == 'pytorch' else (stride, 1)
        self.with_cp = with_cp
        self.conv1 = build_conv_layer(conv_cfg, in_channels, mid, 1, stride=conv1_stride,
                                      bias=False)
        self.add_module('bn1', build_norm_layer(norm_cfg, mid)[1])
        self.conv2 = Involution(mid, mid, stride=conv2_stride, dilation=dilation,
                                norm_cfg=norm_cfg, **(involution_cfg or {}))
        self.add_module('bn2', build_norm_layer(norm_cfg, mid)[1])
        self.conv3 = build_conv_layer(conv_cfg, mid, out_channels, 1, bias=False)
        self.add_module('bn3', build_norm_layer(norm_cfg, out_channels)[1])
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C_in, H, W) -> (N, C_out, H / s, W / s)``, in the layout of ``x``.

        Every layer keeps its input's memory format (oneDNN's convolutions,
        BN and the involution op alike), so a channels-last input gives a
        channels-last output without any layout change inside the block.
        """

        def residual(x: Tensor) -> Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            identity = x if self.downsample is None else self.downsample(x)
            # In place, as mmdet's ResNet: a new block-output-sized tensor per
            # block costs fresh pages (measured: ~10% of RedNet-50 inference on
            # CPU at 800x1333). BN's backward needs its input, not its output.
            out += identity
            return out

        out = checkpoint_module(self, residual, x) if self.with_cp else residual(x)
        return self.relu(out)


class ResLayer(Sequential):
    """The bottlenecks of one stage.

    mmengine's ``Sequential``, as mmdet's ``ResLayer``: ``init_weights`` reaches
    the blocks (their ``init_cfg`` zeroes ``bn3``).
    """


@MODELS.register_module()
class RedNet(BaseModule):
    """RedNet backbone (Li et al., "Involution", CVPR 2021).

    The options follow mmdet's and mmseg's ``ResNet``; state-dict keys and
    shapes are those of the official checkpoints.

    Args:
        depth (int): 26, 38, 50, 101 or 152.
        in_channels (int): Input image channels. Default: 3.
        stem_channels (int): Output channels of the stem. Default: 64.
        base_channels (int): Middle channels of the first stage. Default: 64.
        stem_kernel (int): Kernel size of the stem involution: 3 in the
            ImageNet models, 7 in the detection/segmentation ones. Default: 3.
        num_stages (int): Number of stages, 1 to 4. Default: 4.
        strides (Sequence[int]): Stride of the first block of each stage.
        dilations (Sequence[int]): Dilation of the involutions of each stage
            (dilated backbones for segmentation, e.g. strides (1, 2, 1, 1)
            and dilations (1, 1, 2, 4)).
        contract_dilation (bool): Halve the dilation of the first block of a
            dilated stage, as mmseg's ResNetV1c does. Default: False.
        out_indices (Sequence[int]): Stages whose outputs are returned.
        style (str): 'pytorch' (stride on the involution) or 'caffe' (stride
            on the first 1x1 conv). Default: 'pytorch'.
        avg_down (bool): Downsample the shortcut with an average pool before
            a stride-1 1x1 conv. Default: False.
        frozen_stages (int): Stages (stem = 0) to freeze; -1 freezes none.
        conv_cfg (dict, optional): Config of the 1x1 convolutions.
        norm_cfg (dict): Config of every norm layer, those of the stem and of
            the involution kernel branches included. Default: BN.
        norm_eval (bool): Keep norm layers in eval mode while training.
        with_cp (bool): Gradient checkpointing of every bottleneck: keep only
            block inputs for backward. Unlike mmdet's ResNet, the recomputation
            does not update BN's running statistics a second time. Bypassed
            under ``torch.compile`` (see below).
        recompute_stem (bool): Keep only the image for backward and recompute
            the stem (and max pool) there. RedNet's stem runs three
            conv/norm/activation layers at half resolution where ResNet's
            runs one, so kept, its activations alone make RedNet-50 need more
            training memory than ResNet-50; recomputing them costs one more
            stem forward per step. No effect when the stem is frozen.
            Bypassed under ``torch.compile`` (see below). Default: True.
        channels_last (bool, optional): Run in channels-last memory format: the
            image is converted once, in the stem, and every layer keeps that
            layout, the involution op included; the returned maps are
            contiguous NCHW all the same unless ``channels_last_outputs`` (see
            :meth:`forward`). On CPU oneDNN's convolutions, BN and max pooling
            are faster that way. None: on for CPU inputs. Default: None.
        channels_last_outputs (bool): Return the maps in the inner layout
            (channels-last where ``channels_last`` is on) instead of
            converting each to NCHW. Saves one copy of each returned map, in
            forward and in backward, and, in training, the second copy that
            autograd otherwise keeps of each map a neck reads (the stages keep
            the channels-last one, the neck the NCHW one). mmdet's FPN,
            RetinaHead and RPNHead, mmseg's FPN, UPerHead and FCNHead and
            mmpretrain's GlobalAveragePooling + LinearClsHead give the same
            results on channels-last maps; mmcv's CPU RoIAlign does not (it
            reads NCHW memory), so keep the default for two-stage detectors
            and any RoI head. Default: False.
        zero_init_residual (bool): Zero the last norm (``bn3``) of every block.
            Done by the blocks' own ``init_cfg``, which mmengine runs before
            any ``Pretrained`` init of RedNet or of a module holding it, so
            loaded weights are never zeroed (whatever the ``init_cfg`` form:
            dict, list, ``prefix``; ``load_from`` loads after init anyway).
        involution_cfg (dict, optional): Extra options of every bottleneck
            involution (e.g. ``group_channels``, ``act_cfg``,
            ``regenerate_kernel``).
        init_cfg (dict | list, optional): mmengine init config, e.g.
            ``dict(type='Pretrained', checkpoint=...)``.

    Shape:
        ``(N, 3, H, W) ->`` one ``(N, 256 * 2**i, ~H / 2**(i+2), ...)`` map per
        index ``i`` in ``out_indices`` (a tuple).

    Note:
        Under ``torch.compile``, ``with_cp``, ``recompute_stem`` and the
        involutions' ``regenerate_kernel`` are bypassed: the model runs as if
        they were off, and what backward keeps is the compiler's choice (its
        partitioner recomputes some cheap operations, not convolutions), so
        their eager-mode memory saving is not to be counted on there. The
        outputs and gradients are the same either way.
    """

    arch_settings = {
        26: (1, 2, 4, 1),
        38: (2, 3, 5, 2),
        50: (3, 4, 6, 3),
        101: (3, 4, 23, 3),
        152: (3, 8, 36, 3),
    }

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 stem_kernel: int = 3,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 contract_dilation: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 style: str = 'pytorch',
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 recompute_stem: bool = True,
                 channels_last: Optional[bool] = None,
                 channels_last_outputs: bool = False,
                 zero_init_residual: bool = True,
                 involution_cfg: Optional[dict] = None,
                 init_cfg=None) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
            ]
        super().__init__(init_cfg)
        if depth not in self.arch_settings:
            raise KeyError(f'RedNet: depth must be one of {sorted(self.arch_settings)}, '
                           f'got {depth}')
        if not 1 <= num_stages <= 4:
            raise ValueError(f'RedNet: num_stages must be in 1..4, got {num_stages}')
        if len(strides) != num_stages or len(dilations) != num_stages:
            raise ValueError(f'RedNet: strides {tuple(strides)} and dilations '
                             f'{tuple(dilations)} need one value per stage ({num_stages})')
        if not out_indices or max(out_indices) >= num_stages or min(out_indices) < 0:
            raise ValueError(f'RedNet: out_indices must lie in [0, {num_stages}), got '
                             f'{tuple(out_indices)}')
        if style not in ('pytorch', 'caffe'):
            raise ValueError(f"RedNet: style must be 'pytorch' or 'caffe', got {style!r}")
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'RedNet: frozen_stages must be in -1..{num_stages}, got '
                             f'{frozen_stages}')
        self.depth = depth
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.recompute_stem = recompute_stem
        self.channels_last = channels_last
        self.channels_last_outputs = channels_last_outputs

        half = stem_channels // 2
        self.stem = nn.Sequential(
            ConvModule(in_channels, half, 3, stride=2, padding=1, conv_cfg=conv_cfg,
                       norm_cfg=norm_cfg, inplace=True),
            Involution(half, half, stem_kernel, norm_cfg=norm_cfg,
                       **(involution_cfg or {})),
            build_norm_layer(norm_cfg, half)[1],
            nn.ReLU(inplace=True),
            ConvModule(half, stem_channels, 3, stride=1, padding=1, conv_cfg=conv_cfg,
                       norm_cfg=norm_cfg, inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        block_init_cfg = dict(type='Constant', val=0,
                              override=dict(name='bn3')) if zero_init_residual else None
        self.res_layers = []
        in_ch, out_ch = stem_channels, base_channels * Bottleneck.expansion
        for i, num_blocks in enumerate(self.arch_settings[depth][:num_stages]):
            layer = self._make_stage(num_blocks, in_ch, out_ch, strides[i], dilations[i],
                                     contract_dilation, avg_down, style=style, with_cp=with_cp,
                                     conv_cfg=conv_cfg, norm_cfg=norm_cfg,
                                     involution_cfg=involution_cfg, init_cfg=block_init_cfg)
            self.add_module(f'layer{i + 1}', layer)
            self.res_layers.append(f'layer{i + 1}')
            in_ch, out_ch = out_ch, out_ch * 2
        self._freeze_stages()

    @staticmethod
    def _make_stage(num_blocks: int, in_channels: int, out_channels: int, stride: int,
                    dilation: int, contract_dilation: bool, avg_down: bool,
                    **block_kwargs) -> ResLayer:
        downsample = None
        if stride != 1 or in_channels != out_channels:
            conv_cfg, norm_cfg = block_kwargs['conv_cfg'], block_kwargs['norm_cfg']
            pool = []
            if avg_down and stride != 1:
                # count_include_pad=False: the form of the ceil-mode pool torch 2.14's
                # inductor differentiates right (docs/notes/inductor_avgpool_ceil_mode.md).
                pool = [nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False)]
            downsample = nn.Sequential(
                *pool,
                build_conv_layer(conv_cfg, in_channels, out_channels, 1,
                                 stride=1 if pool else stride, bias=False),
                build_norm_layer(norm_cfg, out_channels)[1])
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        blocks = [
            Bottleneck(in_channels, out_channels, stride, first_dilation, downsample,
                       **block_kwargs)
        ]
        blocks += [
            Bottleneck(out_channels, out_channels, 1, dilation, **block_kwargs)
            for _ in range(1, num_blocks)
        ]
        return ResLayer(*blocks)

    def _freeze_stages(self) -> None:
        frozen = [self.stem] if self.frozen_stages >= 0 else []
        frozen += [getattr(self, f'layer{i}') for i in range(1, self.frozen_stages + 1)]
        for module in frozen:
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def _stem_forward(self, x: Tensor, memory_format: torch.memory_format) -> Tensor:
        # The layout change inside the recomputed part: recomputation then
        # keeps the caller's image only, not a channels-last copy of it.
        return self.maxpool(self.stem(to_memory_format(x, memory_format)))

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        """``(N, 3, H, W) ->`` one map per ``out_indices``, strides 4, 8, 16, 32.

        The image is converted to the inner layout once, inside the stem; the
        stages keep it throughout, and each returned map is converted to the
        output layout on its own (contiguous NCHW by default: mmcv's CPU
        RoIAlign, for one, reads its input as NCHW memory and silently returns
        wrong features for a channels-last map; see ``channels_last_outputs``).
        """
        channels_last = (x.device.type == 'cpu'
                         if self.channels_last is None else self.channels_last)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        out_format = memory_format if self.channels_last_outputs else torch.contiguous_format
        if self.recompute_stem:
            x = checkpoint_module(self.stem, self._stem_forward, x, memory_format)
        else:
            x = self._stem_forward(x, memory_format)
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(to_memory_format(x, out_format))
        return tuple(outs)

    def train(self, mode: bool = True) -> 'RedNet':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self
