"""Whole models in ONNX: one of each kind exported, checked, and evaluated with
tools/test.py --backend onnxruntime against PyTorch on small data."""
import os
import os.path as osp
import pickle
from unittest import mock

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from torch import nn

from mmrednet.demo import make_shapes_cityscapes
from mmrednet.deployment import (
    BACKENDS,
    OnnxRuntimeGraph,
    export_onnx,
    load_deployment,
    load_model,
    runtime_model_cfg,
)
from mmrednet.deployment.check_input import first_test_image
from mmrednet.models import Involution

from .det_helpers import DEMO_RETINANET, ROOT, tiny_cfg, tiny_dataset
from .seg_helpers import config, shrink_for_cpu
from .tools import logged_metrics, run_tool

DEMO_MASK_RCNN = osp.join(ROOT, 'configs', 'demo',
                          'mask-rcnn_rednet26-tiny_involution-fpn_involution-head_shapes.py')
EXPORT_ONNX = 'deployment/export_onnx.py'


def _write(cfg: Config, tmp_path, name: str, adjust=None):
    """``cfg`` as a config file, and a checkpoint of its model (mmengine's layout,
    weights from the model's own init, then ``adjust(model)``) for ``tmp_path/name``."""
    config_file = str(tmp_path / f'{name}.py')
    cfg.dump(config_file)
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    if adjust is not None:
        with torch.no_grad():
            adjust(model)
    checkpoint = str(tmp_path / f'{name}.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)
    return config_file, checkpoint


def evaluate(config_file: str, args, work_dir) -> tuple:
    """tools/test.py on ``args``: ``(metrics, predictions)``.

    Without yapf: the Runner formats the whole config for its log several times
    (seconds each on 2 cores) and nothing here reads it.
    """
    out = str(work_dir / 'predictions.pkl')
    plain_text = property(lambda self: repr(self._cfg_dict))
    with mock.patch.object(Config, 'pretty_text', plain_text):
        assert run_tool('test.py', config_file, *args, '--work-dir', work_dir, '--out', out) == 0
    with open(out, 'rb') as f:
        return logged_metrics(work_dir), pickle.load(f)


def evaluate_both(config_file: str, checkpoint: str, exported: str, tmp_path,
                  backend: str = 'onnxruntime') -> tuple:
    """tools/test.py with PyTorch and with ``backend`` running ``exported``:
    ``(metrics, predictions)`` each."""
    return (evaluate(config_file, [checkpoint], tmp_path / 'pytorch'),
            evaluate(config_file, ['--backend', backend, f'--{BACKENDS[backend].option}', exported],
                     tmp_path / backend))


def assert_same_classifications(expected: list, got: list) -> None:
    """Two backends' classifier predictions: scores close, labels equal."""
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b['pred_score'], a['pred_score'], atol=1e-5, rtol=1e-4)
        assert torch.equal(b['pred_label'], a['pred_label'])


def _assert_same_metrics(expected: dict, got: dict, tol: float) -> None:
    assert expected.keys() == got.keys() and expected
    for name, value in expected.items():
        assert abs(got[name] - value) <= tol, (name, value, got[name])


# --- classifier ------------------------------------------------------------------------


CLASSES = ('red', 'green', 'blue')


def classifier_cfg(data_root: str) -> Config:
    """A RedNet-26 (narrow) ImageClassifier from a config dict, on a folder-per-class set."""
    pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=72, edge='short'),
                dict(type='CenterCrop', crop_size=64), dict(type='PackInputs')]
    return Config(dict(
        default_scope='mmpretrain',
        custom_imports=dict(imports=['mmrednet.models'], allow_failed_imports=False),
        # At the top level, as mmpretrain's configs have it: the Runner hands it
        # to the model, and so must the exporter.
        data_preprocessor=dict(num_classes=3, mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True),
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='mmrednet.RedNet', depth=26, stem_channels=32, base_channels=16,
                          stem_kernel=3, out_indices=(3, )),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=512,
                      loss=dict(type='CrossEntropyLoss'), topk=(1, ))),
        test_pipeline=pipeline,
        test_dataloader=dict(batch_size=2, num_workers=0,
                             sampler=dict(type='DefaultSampler', shuffle=False),
                             dataset=dict(type='CustomDataset', data_root=data_root,
                                          pipeline=pipeline)),
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
        log_level='WARNING'))


def _folder_per_class(root) -> str:
    rng = np.random.default_rng(0)
    for index, name in enumerate(CLASSES):
        os.makedirs(root / name)
        for i in range(3):
            image = rng.integers(0, 120, (80, 90, 3), dtype=np.uint8)
            image[..., 2 - index] += 120  # BGR on disk: mostly red, green or blue
            cv2.imwrite(str(root / name / f'{i}.png'), image)
    return str(root)


def test_classifier_exports_and_evaluates_like_pytorch(tmp_path):
    cfg = classifier_cfg(_folder_per_class(tmp_path / 'images'))
    config_file, checkpoint = _write(cfg, tmp_path, 'classifier')
    onnx_file = str(tmp_path / 'classifier.onnx')
    diffs = export_onnx(config_file, checkpoint, onnx_file, dynamic=True, log=lambda _: None)
    assert list(diffs) == ['main'] and diffs['main'] < 1e-4

    # Logits of another batch and an odd size, against the PyTorch model.
    _, model = load_model(config_file, checkpoint)
    torch.testing.assert_close(model.data_preprocessor.mean.flatten(),
                               torch.tensor([123.675, 116.28, 103.53]))
    [graph] = load_deployment(onnx_file).values()
    x = torch.randn(3, 3, 75, 61)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    [[logits]] = graph(x)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)

    (metrics, preds), (ort_metrics, ort_preds) = evaluate_both(config_file, checkpoint,
                                                                onnx_file, tmp_path)
    assert 'accuracy/top1' in metrics
    _assert_same_metrics(metrics, ort_metrics, 1e-6)
    assert_same_classifications(preds, ort_preds)


def test_dynamic_export_is_checked_on_a_batch_of_two_different_images(tmp_path, monkeypatch):
    from mmrednet.deployment import pipeline
    cfg = classifier_cfg(_folder_per_class(tmp_path / 'images'))
    config_file, checkpoint = _write(cfg, tmp_path, 'classifier')
    friendly = pipeline.export_friendly

    def mixes_the_batch(model):
        """Right for one image; every image of a batch gets the batch mean's logits."""
        model = friendly(model)
        forward = model.backbone.forward
        model.backbone.forward = lambda x: forward(x.mean(0, keepdim=True).expand_as(x))
        return model

    monkeypatch.setattr(pipeline, 'export_friendly', mixes_the_batch)
    out = tmp_path / 'mixing.onnx'
    lines = []
    with pytest.raises(pipeline.ExportCheckError, match=r'logits on input \(2, 3, 65, 66\)'):
        export_onnx(config_file, checkpoint, str(out), dynamic=True, log=lines.append)
    assert 'checked on (1, 3, 64, 64), (2, 3, 65, 66)' in lines[-1]
    assert not out.exists()


# --- segmentor -------------------------------------------------------------------------


def segmentor_files(tmp_path) -> tuple:
    """The demo FPN segmentor on 64x128 Cityscapes-layout images: ``(config, checkpoint)``."""
    data = tmp_path / 'cityscapes'
    make_shapes_cityscapes(str(data), num_train=1, num_val=2, width=128, height=64)
    cfg = config('demo/fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py')
    cfg = shrink_for_cpu(cfg, str(data) + '/', str(tmp_path / 'work'), crop=(64, 64))
    cfg.default_hooks.visualization.draw = False
    return _write(cfg, tmp_path, 'segmentor')


def test_segmentor_exports_and_evaluates_like_pytorch(tmp_path):
    config_file, checkpoint = segmentor_files(tmp_path)
    onnx_file = str(tmp_path / 'segmentor.onnx')
    diffs = export_onnx(config_file, checkpoint, onnx_file, dynamic=True, log=lambda _: None)
    assert diffs['main'] < 1e-4

    (metrics, preds), (ort_metrics, ort_preds) = evaluate_both(config_file, checkpoint,
                                                                onnx_file, tmp_path)
    assert 'mIoU' in metrics
    _assert_same_metrics(metrics, ort_metrics, 0.01)  # percent
    for a, b in zip(preds, ort_preds, strict=True):
        # Logits at the original resolution (mmseg's own crop and resize).
        assert b['seg_logits']['data'].shape == a['seg_logits']['data'].shape == (19, 64, 128)
        torch.testing.assert_close(b['seg_logits']['data'], a['seg_logits']['data'],
                                   atol=1e-4, rtol=1e-4)


# --- detectors -------------------------------------------------------------------------


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_dataset(tmp_path_factory)


def _det_cfg(config_file: str, shapes: str, work_dir: str) -> Config:
    cfg = tiny_cfg(config_file, shapes, work_dir)
    cfg.test_dataloader.dataset.indices = 2  # both val images
    cfg.default_hooks.visualization = dict(type='DetVisualizationHook', draw=False)
    return cfg


def _assert_same_instances(expected: dict, got: dict, masks: bool) -> None:
    """The same detections up to float rounding, whatever order near-ties take."""
    a, b = expected['pred_instances'], got['pred_instances']
    assert len(a['scores']) == len(b['scores']) > 0
    torch.testing.assert_close(b['scores'].sort().values, a['scores'].sort().values,
                               atol=1e-4, rtol=1e-4)
    # Every detection has a twin of the same label and box in the other set
    # (NMS leaves no two such boxes in one set), with the same mask.
    distance = torch.cdist(b['bboxes'], a['bboxes'], p=1)
    distance[b['labels'][:, None] != a['labels'][None]] = float('inf')
    nearest, twin = distance.min(dim=1)
    assert nearest.max() < 1e-2
    if masks:  # RLE, as DumpDetResults writes them
        from pycocotools import mask as mask_utils
        for i, j in enumerate(twin.tolist()):
            assert mask_utils.iou([b['masks'][i]], [a['masks'][j]], [0])[0][0] > 0.99


def assert_same_detections(pytorch: tuple, deployed: tuple, masks: bool = False) -> None:
    """``evaluate_both``'s results on a detector: the same detections and COCO metrics."""
    (metrics, preds), (deployed_metrics, deployed_preds) = pytorch, deployed
    assert 'coco/bbox_mAP' in metrics and (not masks or 'coco/segm_mAP' in metrics)
    _assert_same_metrics(metrics, deployed_metrics, 0.002)
    for a, b in zip(preds, deployed_preds, strict=True):
        _assert_same_instances(a, b, masks=masks)


def _spread_scores(model) -> None:
    """Untrained RetinaNet scores all sit within 1e-5 of its prior 0.01 (BN without
    statistics shrinks the features, N(0, 0.01) head convs the rest), so float
    rounding would pick the top 20 among ties. BN statistics from a few batches
    and He-initialised head convs spread the scores as training would."""
    for module in model.bbox_head.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight)
    model.train()
    for _ in range(3):
        model._forward(torch.randn(2, 3, 96, 96))
    model.eval()


def test_retinanet_static_export_evaluates_like_pytorch(shapes, tmp_path):
    cfg = _det_cfg(DEMO_RETINANET, shapes, str(tmp_path / 'work'))
    config_file, checkpoint = _write(cfg, tmp_path, 'retinanet', _spread_scores)
    onnx_file = str(tmp_path / 'retinanet.onnx')
    export_onnx(config_file, checkpoint, onnx_file, shape=(96, 96), log=lambda _: None)
    [graph] = load_deployment(onnx_file).values()
    assert graph.metadata.kind == 'detector'
    assert graph.metadata.groups == [('cls_scores', 5), ('bbox_preds', 5)]
    with pytest.raises(ValueError, match=r'\(1, 3, 96, 96\).*export with --dynamic'):
        graph(torch.zeros(1, 3, 128, 96))

    assert_same_detections(*evaluate_both(config_file, checkpoint, onnx_file, tmp_path))


def _tame_involutions(model) -> None:
    """An involution is quadratic in its input (its kernel is computed from it), so
    the mask head's two untrained ones reach 1e11, where float32 rounding decides
    the sign of mask logits: scale their kernel branches down."""
    for module in model.modules():
        if isinstance(module, Involution):
            module.conv2.conv.weight.mul_(0.1)


def test_mask_rcnn_every_learned_layer_in_onnxruntime(shapes, tmp_path):
    cfg = _det_cfg(DEMO_MASK_RCNN, shapes, str(tmp_path / 'work'))
    cfg.test_evaluator.metric = ['bbox', 'segm']
    config_file, checkpoint = _write(cfg, tmp_path, 'mask_rcnn', _tame_involutions)
    onnx_file = str(tmp_path / 'mask_rcnn.onnx')
    diffs = export_onnx(config_file, checkpoint, onnx_file, dynamic=True, log=lambda _: None)
    assert set(diffs) == {'main', 'bbox_head', 'mask_head'}
    assert sorted(os.listdir(tmp_path)).count('mask_rcnn.bbox_head.onnx') == 1
    graphs = load_deployment(onnx_file)
    assert graphs['main'].metadata.companions == {
        'bbox_head': 'mask_rcnn.bbox_head.onnx', 'mask_head': 'mask_rcnn.mask_head.onnx'}
    # The onnxruntime model's own PyTorch layers are built from the config and
    # never loaded, so they hold other weights than the checkpoint: its
    # predictions can only match PyTorch's if every learned layer ran in a graph.
    init_default_scope('mmdet')
    runtime = MODELS.build(runtime_model_cfg(cfg.model, onnx_file, 'onnxruntime'))
    trained = torch.load(checkpoint, weights_only=False)['state_dict']
    for key in ('roi_head.mask_head.conv_logits.weight', 'roi_head.bbox_head.fc_cls.weight',
                'rpn_head.rpn_cls.weight', 'backbone.stem.0.conv.weight'):
        assert not torch.equal(runtime.state_dict()[key], trained[key]), key

    assert_same_detections(*evaluate_both(config_file, checkpoint, onnx_file, tmp_path),
                           masks=True)


# --- errors ----------------------------------------------------------------------------


def _exit_message(capsys, relpath: str, *argv) -> str:
    """What ``tools/<relpath> ARGV`` prints to stderr as it exits with a non-zero status."""
    assert run_tool(relpath, *argv) != 0
    return capsys.readouterr().err


@pytest.fixture(scope='module')
def retinanet_files(shapes, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('retinanet_errors')
    cfg = _det_cfg(DEMO_RETINANET, shapes, str(tmp_path / 'work'))
    return _write(cfg, tmp_path, 'retinanet_errors')


def test_bad_inputs_get_clear_errors_and_no_file(retinanet_files, tmp_path, capsys):
    config_file, checkpoint = retinanet_files
    out = str(tmp_path / 'model.onnx')
    message = _exit_message(capsys, EXPORT_ONNX, config_file, tmp_path / 'nope.pth', '--out', out)
    assert 'checkpoint file not found' in message and 'nope.pth' in message
    message = _exit_message(capsys, EXPORT_ONNX, config_file, checkpoint, '--out', out,
                            '--shape', '100', '96')
    assert 'multiples of 32' in message and '128x96' in message
    message = _exit_message(capsys, EXPORT_ONNX, config_file, checkpoint, '--out',
                            tmp_path / 'model.pt')
    assert '.onnx' in message
    message = _exit_message(capsys, EXPORT_ONNX, config_file, checkpoint, '--out',
                            tmp_path / 'missing_dir' / 'model.onnx')
    assert 'output directory does not exist' in message
    assert os.listdir(tmp_path) == []


def test_unsupported_model_type(tmp_path, capsys):
    cfg = Config(dict(default_scope='mmdet', model=dict(type='mmrednet.RedNet', depth=26,
                                                        base_channels=16, stem_channels=32)))
    config_file, checkpoint = _write(cfg, tmp_path, 'backbone')
    message = _exit_message(capsys, EXPORT_ONNX, config_file, checkpoint, '--out',
                            tmp_path / 'model.onnx')
    assert 'RedNet' in message and 'ImageClassifier' in message and 'detectors' in message


def test_mismatched_checkpoint(retinanet_files, tmp_path, capsys):
    config_file, checkpoint = retinanet_files
    state = torch.load(checkpoint, weights_only=False)
    del state['state_dict']['bbox_head.retina_cls.weight']
    torch.save(state, tmp_path / 'partial.pth')
    message = _exit_message(capsys, EXPORT_ONNX, config_file, tmp_path / 'partial.pth',
                            '--out', tmp_path / 'model.onnx')
    assert 'does not fit' in message and 'bbox_head.retina_cls.weight' in message


def test_refused_above_tolerance_keeps_existing_file(retinanet_files, tmp_path, capsys):
    config_file, checkpoint = retinanet_files
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'an earlier export')
    # No float32 reimplementation is bitwise equal: a zero tolerance must refuse.
    assert run_tool(EXPORT_ONNX, config_file, checkpoint, '--out', out,
                    '--atol', 0, '--rtol', 0) != 0
    captured = capsys.readouterr()
    message = captured.err
    assert 'differs from PyTorch by up to' in message and 'nothing was written' in message
    assert 'largest |onnxruntime - pytorch|' in captured.out
    assert out.read_bytes() == b'an earlier export'
    assert os.listdir(tmp_path) == ['model.onnx']


def test_random_check_input_without_the_test_set(retinanet_files, tmp_path, capsys):
    config_file, checkpoint = retinanet_files
    cfg = Config.fromfile(config_file)
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'not_there') + '/'
    missing = str(tmp_path / 'no_data.py')
    cfg.dump(missing)
    _, model = load_model(missing, checkpoint)
    assert first_test_image(cfg, model)[0] is None
    out = str(tmp_path / 'model.onnx')
    assert run_tool(EXPORT_ONNX, missing, checkpoint, '--out', out) == 0  # shape: test pipeline
    assert 'deterministic random image' in capsys.readouterr().out
    assert OnnxRuntimeGraph(out).input.shape == [1, 3, 96, 96]


def test_test_tool_arguments_and_mismatched_deployment(retinanet_files, tmp_path):
    config_file, checkpoint = retinanet_files
    # argparse's usage errors: exit status 2
    assert run_tool('test.py', config_file, '--backend', 'onnxruntime') == 2  # no --onnx
    assert run_tool('test.py', config_file, checkpoint, '--backend', 'onnxruntime',
                    '--onnx', 'model.onnx') == 2  # the weights are in the .onnx
    assert run_tool('test.py', config_file) == 2  # pytorch needs a checkpoint
    with pytest.raises(FileNotFoundError, match='ONNX file not found'):
        run_tool('test.py', config_file, '--backend', 'onnxruntime', '--onnx',
                 tmp_path / 'none.onnx')
    # A segmentor's config with a detector's deployment.
    out = str(tmp_path / 'retinanet.onnx')
    export_onnx(config_file, checkpoint, out, shape=(96, 96), log=lambda _: None)
    seg_config = osp.join(ROOT, 'configs', 'demo',
                          'fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py')
    with pytest.raises(ValueError, match='exported from a RetinaNet model.*EncoderDecoder'):
        run_tool('test.py', seg_config, '--backend', 'onnxruntime', '--onnx', out)


def test_non_finite_outputs_are_named_not_passed_as_zero_difference():
    from mmrednet.deployment.pipeline import ExportCheckError, _largest_difference
    expected = [torch.ones(2, 3)]
    got = [torch.ones(2, 3)]
    got[0][1, 2] = float('nan')
    diff, where, ok = _largest_difference(got, expected, ['logits'], 1e-4, 1e-4)
    assert diff == float('inf') and where == 'logits' and not ok
    expected[0][0, 0] = float('inf')
    with pytest.raises(ExportCheckError, match='logits: PyTorch itself gives non-finite'):
        _largest_difference(got, expected, ['logits'], 1e-4, 1e-4)
