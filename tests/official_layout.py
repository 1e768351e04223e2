"""An independent RedNet written from SPEC §3 with plain torch.nn and the official names.

It stands in for the authors' code (which needs CUDA): its state dict has the
official keys, and its forward uses the unfold reference, so loading its
weights into ``mmrednet.models.RedNet`` strictly and comparing outputs checks
both the key layout and the computation.
"""
from torch import nn

from mmrednet.ops import involution_reference


class ConvBN(nn.Module):
    """mmcv ConvModule's names: ``conv`` and ``bn``."""

    def __init__(self, cin, cout, k, stride=1, relu=True, bias=False, bn=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = relu

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x) if self.bn is not None else x
        return x.relu() if self.relu else x


class OfficialInvolution(nn.Module):

    def __init__(self, channels, kernel_size, stride):
        super().__init__()
        self.k, self.stride, self.groups = kernel_size, stride, channels // 16
        self.conv1 = ConvBN(channels, channels // 4, 1)
        self.conv2 = ConvBN(channels // 4, kernel_size**2 * self.groups, 1, relu=False,
                            bias=True, bn=False)
        self.pool = nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()

    def forward(self, x):
        w = self.conv2(self.conv1(self.pool(x)))
        n, _, h, wd = w.shape
        w = w.view(n, self.groups, self.k, self.k, h, wd)
        return involution_reference(x, w, self.stride, (self.k - 1) // 2)


class OfficialBottleneck(nn.Module):

    def __init__(self, cin, cout, stride):
        super().__init__()
        mid = cout // 4
        self.conv1, self.bn1 = nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid)
        self.conv2, self.bn2 = OfficialInvolution(mid, 7, stride), nn.BatchNorm2d(mid)
        self.conv3, self.bn3 = nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.bn2(self.conv2(out)).relu()
        out = self.bn3(self.conv3(out))
        return (out + (x if self.downsample is None else self.downsample(x))).relu()


class OfficialRedNet(nn.Module):

    def __init__(self, blocks=(1, 2, 4, 1), stem_kernel=3):
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 32, 3, 2), OfficialInvolution(32, stem_kernel, 1),
                                  nn.BatchNorm2d(32), nn.ReLU(), ConvBN(32, 64, 3))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, cout = 64, 256
        for i, n in enumerate(blocks):
            stride = 1 if i == 0 else 2
            layer = [OfficialBottleneck(cin, cout, stride)]
            layer += [OfficialBottleneck(cout, cout, 1) for _ in range(n - 1)]
            self.add_module(f'layer{i + 1}', nn.Sequential(*layer))
            cin, cout = cout, cout * 2

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for i in range(1, 5):
            x = getattr(self, f'layer{i}')(x)
            outs.append(x)
        return tuple(outs)



def randomize_norms(model: nn.Module) -> nn.Module:
    """Give BN layers non-trivial statistics and affine parameters, so a wrong mapping shows."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model
