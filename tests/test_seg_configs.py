"""The Cityscapes configs: the original's settings, and a train step and a
whole-image prediction through mmengine's Runner on CPU."""
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from mmrednet.demo import make_shapes_cityscapes

from .seg_helpers import config, shrink_for_cpu

CONFIGS = {
    'fpn': 'rednet/fpn_rednet50_4xb2-80k_cityscapes-512x1024.py',
    'fpn_inv': 'rednet/fpn_rednet50_involution-fpn_4xb2-80k_cityscapes-512x1024.py',
    'upernet': 'rednet/upernet_rednet50_4xb2-80k_cityscapes-512x1024.py',
}


@pytest.fixture(scope='session')
def tiny_cityscapes(tmp_path_factory):
    """2 train + 1 val frames of 128x64 in the Cityscapes layout."""
    root = tmp_path_factory.mktemp('cityscapes')
    make_shapes_cityscapes(str(root), num_train=2, num_val=1, width=128, height=64)
    return str(root) + '/'


@pytest.fixture
def plain_config_text(monkeypatch):
    """Skip yapf: formatting a whole config costs ~1.5 s per call on 2 cores and
    the Runner does it five times (log and dump); nothing here reads it."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda self: repr(self._cfg_dict)))


class RecordPredictions(Hook):
    """Keeps the data samples the test loop produces."""

    def __init__(self):
        self.samples = []

    def after_test_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.samples.extend(outputs)


@pytest.mark.parametrize('key', sorted(CONFIGS))
def test_original_settings(key):
    cfg = config(CONFIGS[key])
    bb = cfg.model.backbone
    assert bb.type == 'mmrednet.RedNet' and bb.depth == 50 and bb.stem_kernel == 7
    assert bb.norm_cfg.type == 'SyncBN' and bb.norm_eval is False
    assert bb.init_cfg == dict(type='Pretrained', checkpoint='paddleclas://RedNet50?stem_kernel=7')
    # A segmentor-level `pretrained` would overwrite the backbone's init_cfg.
    assert cfg.model.pretrained is None
    assert 'contract_dilation' not in bb  # nothing of the base's ResNetV1c leaks in
    assert cfg.crop_size == (512, 1024) and cfg.model.data_preprocessor.size == (512, 1024)
    assert cfg.train_dataloader.batch_size == 2  # x 4 GPUs
    assert cfg.train_cfg.max_iters == 80000
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.01, momentum=0.9,
                                               weight_decay=0.0005)
    assert cfg.param_scheduler[0].type == 'PolyLR' and cfg.param_scheduler[0].power == 0.9
    assert cfg.model.test_cfg.mode == 'whole'
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    assert cfg.model.decode_head.num_classes == 19
    if key == 'upernet':
        assert cfg.model.decode_head.type == 'UPerHead'
        assert cfg.model.auxiliary_head.loss_decode.loss_weight == 0.4
    else:
        assert cfg.model.decode_head.type == 'FPNHead'
        assert cfg.model.neck.type == ('mmrednet.InvolutionFPN' if key == 'fpn_inv' else 'FPN')


@pytest.mark.slow
@pytest.mark.parametrize('key', sorted(CONFIGS))
def test_train_step_and_whole_image_prediction(key, tiny_cityscapes, tmp_path,
                                               plain_config_text):
    from mmrednet.models import InvolutionFPN, RedNet

    # 64x64 crops (the smallest that keeps 2x2 maps at stride 32 for BN and
    # the pyramid pooling); 128x64 images predicted whole.
    cfg = shrink_for_cpu(config(CONFIGS[key]), tiny_cityscapes, str(tmp_path / key),
                         crop=(64, 64))
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())

    model = runner.model
    assert isinstance(model.backbone, RedNet)
    assert isinstance(getattr(model, 'neck', None), InvolutionFPN) == (key == 'fpn_inv')
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())

    record = RecordPredictions()
    runner.register_hook(record, 'LOWEST')
    metrics = runner.test()
    assert 0.0 <= metrics['mIoU'] <= 100.0
    # Whole-image inference: one prediction at the original image size.
    (sample, ) = record.samples
    assert sample.pred_sem_seg.data.shape == (1, 64, 128)
    assert sample.seg_logits.data.shape == (19, 64, 128)


def test_dilated_rednet_output_stride_8():
    """strides/dilations/contract_dilation as mmseg's ResNetV1c users set them."""
    from mmseg.registry import MODELS

    cfg = config(CONFIGS['fpn']).model.backbone
    cfg.update(strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True,
               norm_cfg=dict(type='BN', requires_grad=True), init_cfg=None)
    backbone = MODELS.build(cfg).eval()
    with torch.no_grad():
        outs = backbone(torch.randn(1, 3, 32, 48))
    assert [o.shape[1:] for o in outs] == [(256, 8, 12), (512, 4, 6), (1024, 4, 6),
                                           (2048, 4, 6)]
    stage4 = backbone.layer4
    assert [b.conv2.dilation for b in stage4] == [(2, 2), (4, 4), (4, 4)]  # first contracted


@pytest.mark.slow
def test_rednet_drops_into_a_dilated_mmseg_config(tmp_path):
    """mmseg's DeepLabV3 R50-D8 base with only the backbone type changed."""
    from mmseg.registry import MODELS

    path = tmp_path / 'deeplabv3_rednet50-d8.py'
    path.write_text(
        "_base_ = 'mmseg::_base_/models/deeplabv3_r50-d8.py'\n"
        "custom_imports = dict(imports=['mmrednet.models'], allow_failed_imports=False)\n"
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        "model = dict(pretrained=None, backbone=dict(type='mmrednet.RedNet', stem_kernel=7,\n"
        "             norm_cfg=norm_cfg), decode_head=dict(norm_cfg=norm_cfg),\n"
        "             auxiliary_head=dict(norm_cfg=norm_cfg))\n")
    cfg = Config.fromfile(str(path))
    assert cfg.model.backbone.dilations == (1, 1, 2, 4)  # kept from ResNetV1c's base
    init_default_scope('mmseg')
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 48, 32))
        logits = model.encode_decode(torch.randn(1, 3, 48, 32), [dict(img_shape=(48, 32))])
    assert feats[-1].shape == (1, 2048, 6, 4)  # output stride 8
    assert logits.shape == (1, 19, 48, 32)


def test_demo_config_trains_and_tests(tiny_cityscapes, tmp_path, plain_config_text):
    """The CPU demo's config, on the tiny dataset: two steps, then a whole-image test."""
    cfg = config('demo/fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py')
    assert cfg.model.backbone.depth == 26 and cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.train_cfg.max_iters == 800 and 'tta_pipeline' in cfg
    cfg = shrink_for_cpu(cfg, tiny_cityscapes, str(tmp_path / 'demo'), crop=(64, 64))
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = 2
    cfg.default_hooks.visualization.draw = False
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert math.isfinite(runner.message_hub.get_scalar('train/loss').current())
    assert 0.0 <= runner.test()['mIoU'] <= 100.0
