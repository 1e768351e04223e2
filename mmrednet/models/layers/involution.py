"""The involution layer: kernel generation fused with the involution op (Li et al., CVPR 2021)."""
from typing import Optional, Sequence, Union

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.registry import MODELS as MMENGINE_MODELS
from torch import Tensor, nn

from mmrednet.ops import involution_fused

from .kernel_regeneration import involution_regenerating_hidden

_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
_CONV = {1: 'Conv1d', 2: 'Conv2d'}


def _single(value: Union[int, Sequence[int]], ndim: int, name: str) -> int:
    """Involution geometry is isotropic: accept an int or ``ndim`` equal ints."""
    values = {value} if isinstance(value, int) else set(value)
    if len(values) != 1 or (not isinstance(value, int) and len(value) != ndim):
        raise ValueError(f'Involution: {name} must be an int or {ndim} equal ints, got {value!r}')
    return values.pop()


class _InvolutionNd(BaseModule):
    _ndim = 2

    def __init__(self,
                 in_channels: int,
                 out_channels: Optional[int] = None,
                 kernel_size: Union[int, Sequence[int]] = 7,
                 stride: Union[int, Sequence[int]] = 1,
                 padding: Union[None, int, Sequence[int]] = None,
                 dilation: Union[int, Sequence[int]] = 1,
                 groups: int = 1,
                 bias: bool = False,
                 group_channels: int = 16,
                 reduction_ratio: int = 4,
                 norm_cfg: Optional[dict] = None,
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 regenerate_kernel: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        nd = self._ndim
        out_channels = in_channels if out_channels is None else out_channels
        kernel_size = _single(kernel_size, nd, 'kernel_size')
        stride = _single(stride, nd, 'stride')
        dilation = _single(dilation, nd, 'dilation')
        same = (kernel_size - 1) // 2 * dilation
        if out_channels != in_channels:
            raise ValueError(f'Involution: out_channels ({out_channels}) must equal in_channels '
                             f'({in_channels}); involution maps C channels to C channels')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'Involution: kernel_size must be odd (the kernel grid must match '
                             f'the output grid), got {kernel_size}')
        if stride < 1 or dilation < 1:
            raise ValueError(f'Involution: stride and dilation must be >= 1, got {stride}, '
                             f'{dilation}')
        if padding is not None and _single(padding, nd, 'padding') != same:
            raise ValueError(f'Involution: padding must be (kernel_size - 1) // 2 * dilation = '
                             f'{same} (or None), got {padding!r}')
        if groups != 1:
            raise ValueError(f'Involution: groups must be 1 (the conv argument), got {groups}; '
                             'set group_channels to choose the involution groups')
        if group_channels < 1 or in_channels % group_channels:
            raise ValueError(f'Involution: group_channels ({group_channels}) must divide '
                             f'in_channels ({in_channels})')
        if reduction_ratio < 1 or in_channels % reduction_ratio:
            raise ValueError(f'Involution: reduction_ratio ({reduction_ratio}) must divide '
                             f'in_channels ({in_channels})')
        self.in_channels = self.out_channels = in_channels
        self.kernel_size = (kernel_size, ) * nd
        self.stride = (stride, ) * nd
        self.padding = (same, ) * nd
        self.dilation = (dilation, ) * nd
        self.groups_conv = groups
        self.groups = in_channels // group_channels  # involution groups G
        self.group_channels = group_channels
        self.regenerate_kernel = regenerate_kernel
        # What ConvModule reads off a conv layer it wraps.
        self.transposed = False
        self.output_padding = (0, ) * nd

        conv_cfg = dict(type=_CONV[nd])
        if norm_cfg is None:
            norm_cfg = dict(type='BN1d' if nd == 1 else 'BN')
        # Reduce (C -> C/r, norm, act), then span (C/r -> K^d * G): the "conv1"
        # and "conv2" of the official checkpoints.
        self.conv1 = ConvModule(in_channels, in_channels // reduction_ratio, 1,
                                conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.conv2 = ConvModule(in_channels // reduction_ratio,
                                kernel_size**nd * self.groups, 1, conv_cfg=conv_cfg,
                                norm_cfg=None, act_cfg=None)
        # ceil_mode: the pooled grid is ceil(H / s), exactly the output grid of
        # the op for odd K and 'same' padding, for every H (the original used
        # floor and broke on odd sizes). count_include_pad=False: the same
        # numbers without padding (a clipped last window averages what it
        # holds either way), but torch 2.14's inductor differentiates only
        # this form right; with True it divides a clipped window's gradient
        # by the full window (docs/notes/inductor_avgpool_ceil_mode.md).
        self.avgpool = (_POOL[nd](stride, stride, ceil_mode=True, count_include_pad=False)
                        if stride > 1 else None)
        self.bias = nn.Parameter(torch.zeros(in_channels)) if bias else None

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != self._ndim + 2:
            raise ValueError(f'{type(self).__name__}: input must have {self._ndim + 2} dims '
                             f'(N, C, spatial...), got shape {tuple(x.shape)}')
        if any(size == 0 for size in x.shape[2:]):
            raise ValueError(f'{type(self).__name__}: input spatial size '
                             f'{tuple(x.shape[2:])} must be positive')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{type(self).__name__}: input has {x.shape[1]} channels, '
                             f'expected in_channels={self.in_channels}')

    def _hidden(self, x: Tensor) -> Tensor:
        """The kernel branch up to its span: ``(N, C, *size) -> (N, C/r, *out)``."""
        return self.conv1(x if self.avgpool is None else self.avgpool(x))

    def generate_kernel(self, x: Tensor) -> Tensor:
        """The kernel the layer applies, ``(N, C, *size) -> (N, G, K, [K,] *out)``.

        For inspection (``tools/visualize_kernels.py`` draws it) and tests: the
        forward never builds it (the fused op generates it tile by tile from
        the hidden features and the span).
        """
        kernel = self.conv2(self._hidden(x))
        n, _, *grid = kernel.shape
        return kernel.view(n, self.groups, *self.kernel_size, *grid)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, C, H, W) -> (N, C, ceil(H/s), ceil(W/s))`` (or the 1-D analogue)."""
        self._check_input(x)
        span = self.conv2.conv
        if (self.regenerate_kernel and torch.is_grad_enabled()
                and not torch.compiler.is_compiling()):
            geometry = (self.kernel_size, self.stride, self.padding, self.dilation)
            out = involution_regenerating_hidden(x, self._hidden, span.weight, span.bias,
                                                 geometry, (self.conv1, ))
        else:
            out = involution_fused(x, self._hidden(x), span.weight, self.kernel_size, span.bias,
                                   self.stride, self.padding, self.dilation)
        if self.bias is not None:
            out = out + self.bias.view(-1, *(1, ) * self._ndim)
        return out

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, kernel_size={self.kernel_size[0]}, '
                f'stride={self.stride[0]}, dilation={self.dilation[0]}, groups={self.groups}, '
                f'regenerate_kernel={self.regenerate_kernel}')


@MMENGINE_MODELS.register_module('involution')
@MMENGINE_MODELS.register_module('involution2d')
class Involution(_InvolutionNd):
    """Involution over 2-D feature maps, a drop-in for a C -> C convolution.

    Registered in mmengine's root ``MODELS`` as ``involution``, so
    ``build_conv_layer(dict(type='involution'), C, C, 7, stride=2)`` and
    ``ConvModule(C, C, 7, padding=3, conv_cfg=dict(type='involution'))`` work
    from any scope.

    Args:
        in_channels (int): Channels ``C`` of input and output.
        out_channels (int, optional): Must equal ``in_channels`` (conv signature).
        kernel_size (int): Odd involution kernel size ``K``. Default: 7.
        stride (int): Output stride ``s``; the kernel is generated from an
            ``s x s`` average pool of the input. Default: 1.
        padding (int, optional): Must be ``(K - 1) // 2 * dilation`` or None.
        dilation (int): Spacing of the kernel taps. Default: 1.
        groups (int): Conv-signature argument; must be 1.
        bias (bool): Add a learned per-channel bias to the output. Default: False.
        group_channels (int): Channels sharing one kernel; ``G = C // group_channels``.
        reduction_ratio (int): Channel reduction ``r`` of the kernel branch.
        norm_cfg (dict, optional): Norm of the kernel branch. Default: BN.
        act_cfg (dict, optional): Activation of the kernel branch (e.g.
            ``dict(type='Swish')``). Default: ReLU.
        regenerate_kernel (bool): What backward keeps. The generated kernel
            (``N x G x K^2 x Ho x Wo``, about three times the input at 16
            channels a group) is never kept, nor written: the layer runs the
            fused op :func:`mmrednet.ops.involution_fused`. True: keep only
            the input, and regenerate the kernel branch's hidden features
            (pool, reduce conv, norm, activation) from it once in backward;
            False: keep those features, the norm's input and statistics
            (and the pooled input at stride > 1), about half the input's
            size at stride 1 and three eighths at stride 2, for one run of
            the reduce branch less (about 4% of a RedNet-50 training step on
            the CPU). Bypassed without grad and under
            ``torch.compile``, where what backward keeps is the compiler's
            choice. Default: True.
        init_cfg (dict, optional): mmengine init config.

    Shape:
        ``(N, C, H, W) -> (N, C, ceil(H / s), ceil(W / s))``.
    """


@MMENGINE_MODELS.register_module('involution1d')
class Involution1d(_InvolutionNd):
    """Involution over 1-D sequences: ``(N, C, L) -> (N, C, ceil(L / s))``.

    Same arguments as :class:`Involution`; the kernel branch norm defaults to BN1d.
    """

    _ndim = 1
