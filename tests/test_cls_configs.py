"""The ImageNet configs (mmpretrain) and the classification demo: build, recipe, Runner."""
import math
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, PARAM_SCHEDULERS, init_default_scope
from mmengine.runner import CheckpointLoader

from mmrednet.analysis import count_params
from mmrednet.demo import SHAPE_CLASSES, SHAPE_WNIDS, make_shapes_imagenet
from mmrednet.models import RedNet

from .det_helpers import ROOT
from .tools import logged_metrics, run_tool

# Params (M) of the paper / the original README, 1000-class head included.
PAPER_PARAMS = {26: 9.23, 38: 12.39, 50: 15.54, 101: 25.65, 152: 33.99}
DEMO = osp.join(ROOT, 'configs', 'demo', 'rednet26-tiny_1xb32-20e_shapes-imagenet-64x64.py')


def imagenet_config(depth: int) -> str:
    return osp.join(ROOT, 'configs', 'rednet',
                    f'rednet{depth}_64xb32-warmup-coslr-130e_imagenet.py')


def _build(cfg: Config):
    init_default_scope(cfg.default_scope)
    return MODELS.build(cfg.model)


def test_imagenet_configs_build_with_the_papers_params():
    params = {}
    for depth in PAPER_PARAMS:
        cfg = Config.fromfile(imagenet_config(depth))
        assert cfg.default_scope == 'mmpretrain'
        model = _build(cfg)
        assert type(model).__name__ == 'ImageClassifier' and isinstance(model.backbone, RedNet)
        assert model.backbone.depth == depth and model.backbone.stem[1].kernel_size == (3, 3)
        params[depth] = count_params(model) / 1e6
    for depth in (26, 38, 50, 101):
        assert round(params[depth], 2) == PAPER_PARAMS[depth], depth
    # The original's cls code builds RedNet-152 with 33.9846 M (33.98). A 7x7 stem
    # involution (the det/seg RedNets') adds exactly 720 parameters: 33.99, while the
    # four other depths keep their published figures (README, "ImageNet").
    stem7 = count_params(RedNet(26, stem_kernel=7)) - count_params(RedNet(26, stem_kernel=3))
    assert stem7 == 2 * (49 - 9) * (8 + 1)  # G=2 groups x 40 more taps x (8 inputs + bias)
    assert round(params[152], 2) == 33.98
    for depth, published in PAPER_PARAMS.items():
        assert round(params[depth] + stem7 / 1e6, 2) == published, depth


def test_the_five_configs_differ_only_in_depth():
    configs = {d: Config.fromfile(imagenet_config(d)).to_dict() for d in PAPER_PARAMS}
    for depth, cfg in configs.items():
        assert cfg['model']['backbone'].pop('depth') == depth
    reference = configs.pop(50)
    for cfg in configs.values():
        assert cfg == reference


def test_imagenet_recipe_is_the_originals():
    cfg = Config.fromfile(imagenet_config(50))
    assert cfg.train_dataloader.batch_size == 32 and cfg.auto_scale_lr.base_batch_size == 2048
    assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.8, momentum=0.9,
                                               weight_decay=1e-4, nesterov=True)
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original', loss_weight=1.0)
    train = [(t['type'], t.get('scale', t.get('prob'))) for t in cfg.train_pipeline]
    assert train == [('LoadImageFromFile', None), ('RandomResizedCrop', 224),
                     ('RandomFlip', 0.5), ('PackInputs', None)]
    test = {t['type']: t for t in cfg.test_dataloader.dataset.pipeline}
    assert test['ResizeEdge']['scale'] == 256 and test['ResizeEdge']['edge'] == 'short'
    assert test['CenterCrop']['crop_size'] == 224
    assert cfg.data_preprocessor.mean == [123.675, 116.28, 103.53] and cfg.data_preprocessor.to_rgb

    # The learning rate the Runner's hook produces: linear warm-up from 0.25x over
    # 3130 iterations, multiplied by a per-epoch cosine from 0.8 to 0 over 130 epochs.
    optim = build_optim_wrapper(torch.nn.Linear(1, 1), cfg.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=optim)) for s in cfg.param_scheduler]
    iters_per_epoch = 626  # ceil(1281167 / 2048)
    lrs = []
    for _epoch in range(7):
        for _ in range(iters_per_epoch):
            lrs.append(optim.get_lr()['lr'][0])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()

    def expected(i):
        epoch = i // iters_per_epoch
        cosine = 0.8 * (1 + math.cos(math.pi * epoch / 130)) / 2
        return cosine * (0.25 + 0.75 * min(i, 3130) / 3130)

    for i in (0, 1, 1000, 2 * iters_per_epoch + 7, 3129, 3130, 3131, 7 * iters_per_epoch - 1):
        assert lrs[i] == pytest.approx(expected(i), rel=1e-6), i


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes_imagenet')
    make_shapes_imagenet(str(root), (('train', 2), ('val', 1)), image_size=48, radius=(8, 16))
    return str(root)


def test_shapes_imagenet_is_deterministic_and_in_imagenets_layout(shapes, tmp_path):
    assert sorted(os.listdir(osp.join(shapes, 'train'))) == list(SHAPE_WNIDS)
    assert sorted(os.listdir(osp.join(shapes, 'val', SHAPE_WNIDS[0]))) == [
        f'{SHAPE_WNIDS[0]}_0.JPEG']
    with open(osp.join(shapes, 'LOC_synset_mapping.txt')) as f:
        assert f.read().split() == [w for pair in zip(SHAPE_WNIDS, SHAPE_CLASSES, strict=True)
                                    for w in pair]
    again = tmp_path / 'again'
    make_shapes_imagenet(str(again), (('train', 2), ('val', 1)), image_size=48, radius=(8, 16))
    for split in ('train', 'val'):
        for wnid in SHAPE_WNIDS:
            for name in os.listdir(osp.join(shapes, split, wnid)):
                with open(osp.join(shapes, split, wnid, name), 'rb') as a, \
                        open(again / split / wnid / name, 'rb') as b:
                    assert a.read() == b.read()

    # The demo config's datasets read it, class names in label order.
    cfg = Config.fromfile(DEMO)
    init_default_scope(cfg.default_scope)
    from mmpretrain.registry import DATASETS
    val = DATASETS.build(dict(cfg.val_dataloader.dataset, data_root=shapes))
    assert val.metainfo['classes'] == SHAPE_CLASSES and len(val) == 3
    assert [val.get_data_info(i)['gt_label'] for i in range(3)] == [0, 1, 2]
    assert _build(cfg).head.num_classes == len(SHAPE_CLASSES)


def _tiny_imagenet_cfg(shapes: str, work_dir: str) -> Config:
    """The RedNet-26 ImageNet config on the tiny shapes: two images, one iteration."""
    cfg = Config.fromfile(imagenet_config(26))
    cfg.work_dir = work_dir
    for name, split in (('train_dataloader', 'train'), ('val_dataloader', 'val'),
                        ('test_dataloader', 'val')):
        cfg[name].dataset.pop('split')  # ImageNet's meta/ files: the shapes have none
        cfg[name].dataset.update(type='CustomDataset', data_root=shapes, data_prefix=split,
                                 ann_file='')
        cfg[name].update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_dataloader.dataset.indices = 2
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1, val_interval=100)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1, by_epoch=False)
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
    cfg.log_level = 'WARNING'
    cfg.randomness = dict(seed=0)
    return cfg


def test_train_step_predict_and_convert_through_the_tools(shapes, tmp_path, convert):
    cfg = _tiny_imagenet_cfg(shapes, str(tmp_path / 'work'))
    config = str(tmp_path / 'rednet26_tiny.py')
    cfg.dump(config)
    assert run_tool('train.py', config) == 0
    ckpt_path = tmp_path / 'work' / 'iter_1.pth'
    # mmengine's loader, as resume/load_from: weights_only=True with mmengine's globals.
    ckpt = CheckpointLoader.load_checkpoint(str(ckpt_path), map_location='cpu')
    assert ckpt['meta']['iter'] == 1 and 'head.fc.weight' in ckpt['state_dict']

    out = tmp_path / 'preds.pkl'
    assert run_tool('test.py', config, ckpt_path, '--work-dir', tmp_path / 'test',
                    '--out', out, '--show-dir', tmp_path / 'vis') == 0
    metrics = logged_metrics(tmp_path / 'test')
    assert set(metrics) == {'accuracy/top1', 'accuracy/top5'}
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 3 and preds[0]['pred_score'].shape == (1000, )
    assert sorted(os.listdir(tmp_path / 'vis')) == sorted(
        f'{w}_0.JPEG_0.png' for w in SHAPE_WNIDS)
    assert run_tool('test.py', config, ckpt_path, '--work-dir', tmp_path / 'tta', '--tta') == 0
    flipped = logged_metrics(tmp_path / 'tta')
    assert set(flipped) == {'accuracy/top1', 'accuracy/top5'}
    with pytest.raises(ValueError, match='--out must end in .pkl'):
        run_tool('test.py', config, ckpt_path, '--out', tmp_path / 'preds_dir')

    # Pretraining's result feeds the detection/segmentation RedNets (7x7 stem) ...
    dst = tmp_path / 'rednet26_imagenet.pth'
    assert convert(ckpt_path, dst, '--stem-kernel', 7).returncode == 0
    RedNet(26, stem_kernel=7).load_state_dict(
        torch.load(dst, weights_only=True)['state_dict'], strict=True)
    # ... and, with its head, loads strictly back into the ImageNet config's model.
    assert convert(ckpt_path, tmp_path / 'cls.pth', '--with-head').returncode == 0
    classifier = _build(Config.fromfile(imagenet_config(26)))
    classifier.load_state_dict(torch.load(tmp_path / 'cls.pth', weights_only=True)['state_dict'],
                               strict=True)
    torch.testing.assert_close(classifier.head.fc.weight, ckpt['state_dict']['head.fc.weight'])


def test_register_all_modules_in_a_fresh_process():
    script = '\n'.join([
        'import sys',
        'from mmengine.registry import MODELS, DefaultScope',
        'from mmrednet.utils import register_all_modules',
        "assert 'mmrednet.models' not in sys.modules",
        'register_all_modules(init_default_scope=False)',
        "assert 'mmrednet.models' in sys.modules",
        'assert DefaultScope.get_current_instance() is None',
        "assert MODELS.get('RedNet') is None  # mmengine's root scope has no RedNet",
        'register_all_modules()',
        "assert DefaultScope.get_current_instance().scope_name == 'mmrednet'",
        "model = MODELS.build(dict(type='RedNet', depth=26))",
        "print(type(model).__module__, type(model).__name__)",
    ])
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['mmrednet.models.backbones.rednet', 'RedNet']
