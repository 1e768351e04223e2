"""The involution neck and heads: their options, and an in-place ReLU after an involution."""
import copy

import pytest
import torch
from mmengine.registry import init_default_scope
from torch import nn

from mmrednet.models import Involution, InvolutionFCNMaskHead, InvolutionFPN, InvolutionRPNHead


@pytest.fixture(autouse=True)
def _mmdet_scope():
    init_default_scope('mmdet')


def test_involution_cfg_can_change_the_kernel_size():
    fpn = InvolutionFPN(in_channels=[16, 32], out_channels=16, num_outs=2,
                        involution_cfg=dict(kernel_size=3))
    rpn = InvolutionRPNHead(16, feat_channels=16, involution_cfg=dict(kernel_size=5))
    mask = InvolutionFCNMaskHead(num_convs=1, in_channels=16, conv_out_channels=16,
                                 num_classes=3, involution_cfg=dict(kernel_size=3))
    assert [c.kernel_size for c in fpn.fpn_convs] == [(3, 3)] * 2
    assert rpn.rpn_conv.kernel_size == (5, 5)
    assert mask.convs[0][0].kernel_size == (3, 3)
    # And the original's 7 by default.
    assert InvolutionRPNHead(16, feat_channels=16).rpn_conv.kernel_size == (7, 7)


@pytest.mark.parametrize('regenerate_kernel', [True, False])
def test_in_place_relu_after_an_involution_gives_the_same_gradients(regenerate_kernel):
    involution = Involution(16, kernel_size=3, regenerate_kernel=regenerate_kernel,
                            bias=True).double()
    x = torch.randn(2, 16, 9, 7, dtype=torch.double)
    weights = torch.randn(2, 16, 9, 7, dtype=torch.double)
    grads = {}
    for inplace in (False, True):
        involution.zero_grad()
        xx = x.clone().requires_grad_()
        out = nn.ReLU(inplace=inplace)(involution(xx))
        (out * weights).sum().backward()
        grads[inplace] = [xx.grad] + [p.grad.clone() for p in involution.parameters()]
    for a, b in zip(grads[False], grads[True], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_mask_head_trains_with_its_in_place_relus():
    torch.manual_seed(0)
    head = InvolutionFCNMaskHead(num_convs=2, in_channels=16, conv_out_channels=16,
                                 num_classes=3, involution_cfg=dict(kernel_size=3))
    head.init_weights()
    # Each conv is Sequential(Involution, ReLU), as in the original.
    assert all(isinstance(c[1], nn.ReLU) and c[1].inplace for c in head.convs)
    reference = copy.deepcopy(head)
    for conv in reference.convs:
        conv[1].inplace = False
    rois, target = torch.randn(4, 16, 14, 14), torch.rand(4, 3, 28, 28).round()
    losses = {}
    for name, model in (('in place', head), ('out of place', reference)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        losses[name] = []
        for _ in range(3):
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(model(rois), target)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    assert losses['in place'] == losses['out of place']
    assert losses['in place'][-1] < losses['in place'][0]
