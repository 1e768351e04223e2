"""tools/convert_official_checkpoint.py on checkpoints in the original's key layout."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from mmrednet.converters import expand_stem_kernel
from mmrednet.models import Involution, RedNet

from .det_helpers import ROOT
from .official_layout import OfficialRedNet, randomize_norms


@pytest.fixture(scope='module')
def imagenet_ckpt(tmp_path_factory):
    """An mmcls-layout RedNet-26 classifier (backbone.* + head.fc.*) and its model."""
    torch.manual_seed(0)
    official = randomize_norms(OfficialRedNet(blocks=(1, 2, 4, 1), stem_kernel=3).eval())
    state = {f'backbone.{k}': v for k, v in official.state_dict().items()}
    state.update({'head.fc.weight': torch.randn(1000, 2048), 'head.fc.bias': torch.zeros(1000)})
    path = tmp_path_factory.mktemp('official') / 'rednet26.pth'
    torch.save(dict(state_dict=state, meta=dict(mmcls_version='0.10.0')), path)
    return path, official


@pytest.mark.parametrize('stem_kernel', [3, 7])
def test_imagenet_checkpoint_loads_strictly_and_computes_the_same(imagenet_ckpt, tmp_path,
                                                                  stem_kernel, convert):
    src, official = imagenet_ckpt
    dst = tmp_path / 'converted.pth'
    proc = convert(src, dst, '--stem-kernel', stem_kernel)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'dropped head.fc.weight' in proc.stdout
    model = RedNet(26, stem_kernel=stem_kernel).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for ours, theirs in zip(model(x), official(x), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_stem_expansion_is_exact():
    torch.manual_seed(0)
    small, big = Involution(32, kernel_size=3).eval(), Involution(32, kernel_size=7).eval()
    state = small.state_dict()
    state['conv2.conv.weight'], state['conv2.conv.bias'] = expand_stem_kernel(
        state['conv2.conv.weight'], state['conv2.conv.bias'], 3, 7)
    big.load_state_dict(state)
    x = torch.randn(2, 32, 9, 11)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x))


def test_refuses_input_existing_output_and_unknown_keys(imagenet_ckpt, tmp_path, convert):
    src, _ = imagenet_ckpt
    before = src.read_bytes()
    proc = convert(src, src, '--force')
    assert proc.returncode != 0 and 'refusing to overwrite the input' in proc.stderr
    assert src.read_bytes() == before
    existing = tmp_path / 'exists.pth'
    existing.write_bytes(b'keep')
    proc = convert(src, existing)
    assert proc.returncode != 0 and '--force' in proc.stderr
    assert existing.read_bytes() == b'keep'
    state = torch.load(src, weights_only=True)['state_dict']
    state['backbone.some_new_module.weight'] = torch.zeros(1)
    odd = tmp_path / 'odd.pth'
    torch.save(dict(state_dict=state), odd)
    proc = convert(odd, tmp_path / 'out.pth')
    assert proc.returncode == 1
    assert 'could not map backbone.some_new_module.weight' in proc.stdout
    assert not (tmp_path / 'out.pth').exists()


def test_mmdet2_mask_rcnn_checkpoint_converts(tmp_path, convert):
    """A whole Mask R-CNN (involution neck and heads) in the mmdet 2.x layout."""
    config = osp.join(ROOT, 'configs', 'rednet',
                      'mask-rcnn_rednet50_involution-fpn_involution-head_1x_coco.py')
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = None
    init_default_scope('mmdet')
    torch.manual_seed(0)
    source = MODELS.build(cfg.model).eval()
    state = source.state_dict()
    # The original's names (SPEC §3-4), spelled out: they must be what we save.
    for key in ('backbone.stem.1.conv2.conv.bias', 'backbone.layer1.0.conv2.conv1.bn.weight',
                'neck.fpn_convs.0.conv1.conv.weight', 'neck.lateral_convs.0.conv.weight',
                'rpn_head.rpn_conv.conv1.conv.weight', 'rpn_head.rpn_conv.conv2.conv.bias',
                'rpn_head.rpn_cls.weight', 'rpn_head.rpn_reg.bias',
                'roi_head.bbox_head.shared_fcs.0.weight', 'roi_head.bbox_head.fc_cls.weight',
                'roi_head.mask_head.convs.3.0.conv1.conv.weight',
                'roi_head.mask_head.upsample.weight', 'roi_head.mask_head.conv_logits.bias'):
        assert key in state, key
    src = tmp_path / 'mask_rcnn_red50_neck_fpn_head_1x_coco.pth'
    torch.save(dict(state_dict=state, meta=dict(mmdet_version='2.11.0', epoch=12)), src)
    dst = tmp_path / 'converted.pth'
    proc = convert(src, dst, '--config', config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'layout: detector' in proc.stdout
    target = MODELS.build(cfg.model).eval()
    target.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours, theirs = target.extract_feat(x), source.extract_feat(x)
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b)
        for a, b in zip(target.rpn_head(ours)[0], source.rpn_head(theirs)[0],
                        strict=True):
            torch.testing.assert_close(a, b)
        rois = torch.rand(3, 256, 14, 14)
        torch.testing.assert_close(target.roi_head.mask_head(rois),
                                   source.roi_head.mask_head(rois))
