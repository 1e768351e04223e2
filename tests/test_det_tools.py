"""tools/train.py and tools/test.py: missing weights, resume, outputs (launchers: see
test_distributed.py)."""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmrednet.apis import MissingPretrainedError, check_pretrained_files

from .det_helpers import DEMO_RETINANET, ROOT, tiny_cfg, tiny_dataset
from .tools import logged_metrics, run_tool


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_dataset(tmp_path_factory)


def _write_cfg(cfg: Config, path) -> str:
    cfg.dump(str(path))
    return str(path)


@pytest.mark.parametrize('resume', [[], ['--resume']], ids=['fresh', 'resume-nothing-yet'])
def test_missing_pretrained_weights_say_how_to_get_them(tmp_path, monkeypatch, resume, capsys):
    """Also with ``--resume`` (what slurm_train.sh passes) in a work dir without a checkpoint:
    the run starts afresh and needs the pretrained weights."""
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    config = osp.join(ROOT, 'configs', 'rednet', 'retinanet_rednet50_fpn_1x_coco.py')
    local = 'checkpoints/rednet50_imagenet.pth'  # a converted file instead of the scheme
    assert run_tool('train.py', config, '--work-dir', tmp_path / 'w', *resume,
                    '--cfg-options', f'model.backbone.init_cfg.checkpoint={local}') == 1
    message = capsys.readouterr().err
    assert local in message
    assert 'tools/convert_official_checkpoint.py' in message
    assert "model.backbone.init_cfg.checkpoint='paddleclas://RedNet50?stem_kernel=7'" in message
    assert '--cfg-options model.backbone.init_cfg=None' in message
    cfg = Config.fromfile(config)
    check_pretrained_files(cfg.model)  # paddleclas://: fetched when the model is initialised
    cfg.model.backbone.init_cfg.checkpoint = local
    with pytest.raises(MissingPretrainedError):
        check_pretrained_files(cfg.model)
    cfg.model.backbone.init_cfg.checkpoint = 'https://example.com/rednet50.pth'
    check_pretrained_files(cfg.model)  # URLs are mmengine's business


def _flat_state(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    optim = ckpt['optimizer']['state']
    return ckpt['state_dict'], optim, ckpt['meta']['iter']


def test_resume_continues_with_the_same_state(shapes, tmp_path):
    full = tiny_cfg(DEMO_RETINANET, shapes, str(tmp_path / 'full'), max_iters=2)
    for step in full.train_dataloader.dataset.pipeline:
        if step.type == 'RandomFlip':
            step.prob = 0.5  # resumed runs draw what uninterrupted ones draw
    config = _write_cfg(full, tmp_path / 'full.py')
    assert run_tool('train.py', config) == 0
    # An interrupted run: resume from the first checkpoint into another work dir.
    resumed_dir = tmp_path / 'resumed'
    assert run_tool('train.py', config, '--work-dir', resumed_dir,
                    '--resume', tmp_path / 'full' / 'iter_1.pth') == 0
    ref_w, ref_opt, ref_iter = _flat_state(tmp_path / 'full' / 'iter_2.pth')
    got_w, got_opt, got_iter = _flat_state(resumed_dir / 'iter_2.pth')
    assert ref_iter == got_iter == 2
    assert ref_w.keys() == got_w.keys()
    for key, value in ref_w.items():
        torch.testing.assert_close(got_w[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert ref_opt.keys() == got_opt.keys()
    for idx, state in ref_opt.items():
        for name, value in state.items():
            torch.testing.assert_close(got_opt[idx][name], value, rtol=1e-5, atol=1e-6)
    # The weights did change between the checkpoints (the comparison means something).
    first, _, _ = _flat_state(tmp_path / 'full' / 'iter_1.pth')
    assert not torch.equal(first['neck.fpn_convs.0.conv2.conv.weight'],
                           ref_w['neck.fpn_convs.0.conv2.conv.weight'])

    # test.py on the result: metrics, a pickle of predictions, prediction images.
    out = tmp_path / 'preds.pkl'
    assert run_tool('test.py', config, resumed_dir / 'iter_2.pth', '--work-dir',
                    tmp_path / 'test', '--out', out, '--show-dir', tmp_path / 'vis') == 0
    metrics = logged_metrics(tmp_path / 'test')
    assert 'coco/bbox_mAP' in metrics
    assert out.exists()
    assert any(name.endswith('.png') for name in os.listdir(tmp_path / 'vis'))


def test_visualize_kernels_writes_kernel_and_prediction_images(shapes, tmp_path):
    image = osp.join(shapes, 'val', '000001.png')
    assert run_tool('visualize_kernels.py', DEMO_RETINANET, 'none', image, '--out-dir', tmp_path,
                    '--layers', 'backbone.stem.1', 'neck.fpn_convs.0') == 0
    written = sorted(os.listdir(tmp_path))
    assert written == ['kernels_backbone_stem_1.png', 'kernels_neck_fpn_convs_0.png',
                       'prediction.png']
