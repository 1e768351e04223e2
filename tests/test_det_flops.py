"""The FLOP counter counts involution: N*C*Ho*Wo*K*K multiply-adds, and the span
convolution the fused op computes as a convolution."""
import pytest
import torch

from mmrednet.analysis import count_params, flop_analyzer
from mmrednet.models import Involution, Involution1d, RedNet


@pytest.mark.parametrize('stride,size', [(1, (20, 20)), (2, (21, 15))])
def test_involution_flops_match_a_hand_count(stride, size):
    n, c, k = 2, 32, 7
    layer = Involution(c, kernel_size=k, stride=stride).eval()
    x = torch.randn(n, c, *size)
    ho, wo = -(-size[0] // stride), -(-size[1] // stride)
    with torch.no_grad():
        analyzer = flop_analyzer(layer, (x, ))
        by_op = analyzer.by_operator()
    assert by_op['involution'] == n * c * ho * wo * k * k
    # The kernel branch is two 1x1 convs: reduce C -> C/4 and span C/4 -> K*K*G.
    groups = c // 16
    hand_conv = n * ho * wo * (c * (c // 4) + (c // 4) * (k * k * groups))
    assert by_op['conv'] == hand_conv
    assert not {'mmrednet::involution', 'mmrednet::involution_fused'} & set(
        analyzer.unsupported_ops())


def test_one_dimensional_involution_flops():
    n, c, k, length = 2, 32, 5, 11
    layer = Involution1d(c, kernel_size=k, stride=2, group_channels=8).eval()
    with torch.no_grad():
        by_op = flop_analyzer(layer, (torch.randn(n, c, length), )).by_operator()
    lo, groups = 6, c // 8
    assert by_op['involution'] == n * c * lo * k
    assert by_op['conv'] == n * lo * (c * (c // 4) + (c // 4) * (k * groups))


def test_rednet50_flops_are_counted_as_before_the_fused_op():
    # The backbone at 224 x 224 as counted when the layer ran span convolution
    # and involution separately (2.67 G; the model zoo's "ours" adds the head).
    model = RedNet(50).eval()
    with torch.no_grad():
        analyzer = flop_analyzer(model, (torch.randn(1, 3, 224, 224), ))
        analyzer.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = analyzer.by_operator()
    assert by_op['conv'] == 2575233024
    assert by_op['involution'] == 71224832
    assert by_op['batch_norm'] == 24724224


def test_whole_backbone_counts_every_involution():
    model = RedNet(26, base_channels=16, stem_channels=32, stem_kernel=7,
                   frozen_stages=1).eval()
    with torch.no_grad():
        by_op = flop_analyzer(model, (torch.randn(1, 3, 64, 64), )).by_operator()
    # stem: 16 ch at 32x32, K=7; stage 1: one block, 16 ch at 16x16; then strided stages.
    stem = 16 * 32 * 32 * 49
    stage1 = 16 * 16 * 16 * 49
    stage2 = 32 * 8 * 8 * 49 * 2
    stage3 = 64 * 4 * 4 * 49 * 4
    stage4 = 128 * 2 * 2 * 49 * 1
    assert by_op['involution'] == stem + stage1 + stage2 + stage3 + stage4
    # Frozen stem and stage 1 do not count as trainable (the original's tables).
    frozen = sum(p.numel() for m in (model.stem, model.layer1) for p in m.parameters())
    assert count_params(model) == count_params(model, trainable_only=False) - frozen
