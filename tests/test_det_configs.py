"""Each of the eight COCO configs trains one iteration and predicts through mmengine's Runner."""
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from .det_helpers import COCO_CONFIGS, ROOT, tiny_cfg, tiny_dataset


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    return tiny_dataset(tmp_path_factory)


class _Snapshot(Hook):
    """Float weights just before and just after the (only) training iteration."""

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.before = {k: v.clone() for k, v in runner.model.state_dict().items()
                       if v.is_floating_point()}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.after = {k: v.clone() for k, v in runner.model.state_dict().items()
                      if v.is_floating_point()}
        self.losses = {k: float(v) for k, v in (outputs or {}).items()}


@pytest.mark.parametrize('name', COCO_CONFIGS)
def test_config_trains_and_predicts(name, shapes, tmp_path):
    cfg = tiny_cfg(osp.join(ROOT, 'configs', 'rednet', name), shapes, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    snap = _Snapshot()
    runner.register_hook(snap)
    runner.train()
    assert runner.iter == 1
    assert all(torch.isfinite(torch.tensor(v)) for v in snap.losses.values()), snap.losses
    before, after = snap.before, snap.after
    # Frozen stage 1 stays put; the FPN (and every involution head) learned.
    assert torch.equal(before['backbone.layer1.0.conv1.weight'],
                       after['backbone.layer1.0.conv1.weight'])
    changed = [k for k, v in before.items() if not torch.equal(v, after[k])]
    assert any(k.startswith('neck.') for k in changed)
    assert any(k.startswith('backbone.layer4.') for k in changed)
    if 'involution-head' in name:
        assert 'rpn_head.rpn_conv.conv2.conv.weight' in changed
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
    if name.startswith('mask-rcnn'):
        assert 'coco/segm_mAP' in metrics or 'coco/bbox_mAP' in metrics


@pytest.mark.parametrize('name', ['retinanet_rednet26-tiny_involution-fpn_shapes.py',
                                  'mask-rcnn_rednet26-tiny_involution-fpn_involution-head_shapes.py'])
def test_demo_config_trains_and_predicts(name, shapes, tmp_path):
    cfg = tiny_cfg(osp.join(ROOT, 'configs', 'demo', name), shapes, str(tmp_path))
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 'coco/bbox_mAP' in metrics
    if name.startswith('mask-rcnn'):
        assert 'coco/segm_mAP' in metrics
