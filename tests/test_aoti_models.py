"""Whole models as AOTInductor packages: a classifier, a segmentor and a detector exported,
checked and evaluated with tools/test.py --backend aoti against PyTorch on small data,
and the C++ runner reproducing Python's outputs without Python.

AOTInductor compiles each graph with a C++ compiler (tens of seconds on 2
cores): the packages are made once per module and shared.
"""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from torch import nn

from mmrednet.deployment import export_aoti, load_model, load_package
from mmrednet.deployment.aoti.export import temporary_package
from mmrednet.deployment.aoti.package import PackageInfo
from mmrednet.deployment.aoti.runner import build_runner, run_package, runner_op_library

from .det_helpers import DEMO_RETINANET, tiny_dataset
from .seg_helpers import ROOT, config
from .test_aoti_package import layer_ops
from .test_onnx_models import (
    _assert_same_metrics,
    _det_cfg,
    _folder_per_class,
    _spread_scores,
    _write,
    assert_same_classifications,
    assert_same_detections,
    classifier_cfg,
    evaluate,
    evaluate_both,
    segmentor_files,
)
from .test_onnx_op import FusedInvolution
from .tools import run_tool

EXPORT_AOTI = 'deployment/export_aoti.py'
QUIET = dict(log=lambda _: None)


def _both_backends(config_file: str, checkpoint: str, package: str, tmp_path):
    return evaluate_both(config_file, checkpoint, package, tmp_path, backend='aoti')


@pytest.fixture(scope='module')
def classifier(tmp_path_factory):
    """A narrow RedNet-26 classifier at the test images' size (64x64, static): its files.
    (Dynamic shapes: test_aoti_package; a dynamic RedNet compiles for minutes.)"""
    tmp_path = tmp_path_factory.mktemp('aoti_classifier')
    cfg = classifier_cfg(_folder_per_class(tmp_path / 'images'))
    cfg.test_dataloader.batch_size = 1  # the package's batch
    config_file, checkpoint = _write(cfg, tmp_path, 'classifier')
    package = str(tmp_path / 'classifier.pt2')
    diffs = export_aoti(config_file, checkpoint, package, **QUIET)
    return config_file, checkpoint, package, diffs


@pytest.fixture(scope='module')
def segmentor(tmp_path_factory):
    """The demo FPN segmentor at the test images' size (64x128, static)."""
    tmp_path = tmp_path_factory.mktemp('aoti_segmentor')
    config_file, checkpoint = segmentor_files(tmp_path)
    package = str(tmp_path / 'segmentor.pt2')
    diffs = export_aoti(config_file, checkpoint, package, **QUIET)
    return config_file, checkpoint, package, diffs


# --- evaluation ------------------------------------------------------------------------


def test_classifier_package_evaluates_like_pytorch(classifier, tmp_path):
    config_file, checkpoint, package, diffs = classifier
    assert list(diffs) == ['main'] and diffs['main'] < 1e-4
    info = PackageInfo.read(package)
    assert info.ops == layer_ops()
    assert info.inputs['main'] == [1, 3, 64, 64]
    meta = info.metadata('main')
    assert (meta.kind, meta.model_type, meta.groups) == ('classifier', 'ImageClassifier',
                                                         [('logits', 1)])

    # Logits of another input, against the PyTorch model.
    _, model = load_model(config_file, checkpoint)
    graph = load_package(package)['main']
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x, mode='tensor')
    [[logits]] = graph(x)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match=r'takes input of shape \(1, 3, 64, 64\).*--dynamic'):
        graph(torch.zeros(2, 3, 64, 64))

    (metrics, preds), (aoti_metrics, aoti_preds) = _both_backends(config_file, checkpoint,
                                                                  package, tmp_path)
    assert 'accuracy/top1' in metrics
    _assert_same_metrics(metrics, aoti_metrics, 1e-6)
    assert_same_classifications(preds, aoti_preds)


def test_segmentor_package_evaluates_like_pytorch(segmentor, tmp_path):
    config_file, checkpoint, package, diffs = segmentor
    assert diffs['main'] < 1e-4
    assert PackageInfo.read(package).inputs['main'] == [1, 3, 64, 128]
    (metrics, preds), (aoti_metrics, aoti_preds) = _both_backends(config_file, checkpoint,
                                                                  package, tmp_path)
    assert 'mIoU' in metrics
    _assert_same_metrics(metrics, aoti_metrics, 0.01)  # percent
    for a, b in zip(preds, aoti_preds, strict=True):
        assert b['seg_logits']['data'].shape == a['seg_logits']['data'].shape == (19, 64, 128)
        torch.testing.assert_close(b['seg_logits']['data'], a['seg_logits']['data'],
                                   atol=1e-4, rtol=1e-4)


def test_retinanet_package_evaluates_like_pytorch(tmp_path_factory, tmp_path):
    cfg = _det_cfg(DEMO_RETINANET, tiny_dataset(tmp_path_factory), str(tmp_path / 'work'))
    config_file, checkpoint = _write(cfg, tmp_path, 'retinanet', _spread_scores)
    package = str(tmp_path / 'retinanet.pt2')
    export_aoti(config_file, checkpoint, package, shape=(96, 96), **QUIET)
    graph = load_package(package)['main']
    assert graph.metadata.groups == [('cls_scores', 5), ('bbox_preds', 5)]
    with pytest.raises(ValueError, match=r'\(1, 3, 96, 96\).*export with --dynamic'):
        graph(torch.zeros(1, 3, 128, 96))

    assert_same_detections(*_both_backends(config_file, checkpoint, package, tmp_path))


# --- the export's discipline -----------------------------------------------------------


def test_refused_above_tolerance_keeps_existing_file(classifier, tmp_path, capsys):
    config_file, checkpoint, _, _ = classifier
    out = tmp_path / 'model.pt2'
    out.write_bytes(b'an earlier export')
    # A compiled, weight-frozen graph is not bitwise equal: a zero tolerance must refuse.
    assert run_tool(EXPORT_AOTI, config_file, checkpoint, '--out', out, '--shape', 32, 32,
                    '--atol', 0, '--rtol', 0) != 0
    captured = capsys.readouterr()
    message = captured.err
    assert 'differs from PyTorch by up to' in message and 'nothing was written' in message
    assert 'largest |aoti - pytorch|' in captured.out
    assert out.read_bytes() == b'an earlier export'
    assert os.listdir(tmp_path) == ['model.pt2']


def test_bad_arguments_get_clear_errors(classifier, tmp_path, capsys):
    config_file, checkpoint, package, _ = classifier
    for out, expected in ((tmp_path / 'model.onnx', '.pt2'),
                          (tmp_path / 'missing' / 'model.pt2', 'output directory does not')):
        assert run_tool(EXPORT_AOTI, config_file, checkpoint, '--out', out) != 0
        assert expected in capsys.readouterr().err
    for argv, expected in (
            ([config_file, '--backend', 'aoti'], '--backend aoti needs --package model.pt2'),
            ([config_file, checkpoint, '--backend', 'aoti', '--package', package],
             'and no checkpoint'),
            ([config_file, checkpoint, '--package', package],  # the pytorch backend
             '--package is for --backend aoti')):
        assert run_tool('test.py', *argv) == 2  # argparse's usage error
        assert expected in capsys.readouterr().err
    seg_config = config('demo/fpn_rednet26-tiny_1xb4-800_shapes-cityscapes-128x128.py')
    seg_file = str(tmp_path / 'seg.py')
    seg_config.dump(seg_file)
    with pytest.raises(ValueError, match='exported from a ImageClassifier model.*EncoderDecoder'):
        run_tool('test.py', seg_file, '--backend', 'aoti', '--package', package)
    assert os.listdir(tmp_path) == ['seg.py']


def _variant(config_file: str, path, change) -> str:
    """``config_file`` with ``change(cfg)`` applied, written to ``path``."""
    cfg = Config.fromfile(config_file)
    change(cfg)
    cfg.dump(str(path))
    return str(path)


def test_static_package_is_tested_at_its_batch_size(classifier, tmp_path, capsys):
    """The guide's recipe as written: export without --dynamic, then tools/test.py with the
    config's own batch size (3 here): it tests with batch 1 and says so."""
    config_file, _, package, _ = classifier
    batch3 = _variant(config_file, tmp_path / 'batch3.py',
                      lambda cfg: cfg.test_dataloader.update(batch_size=3))
    metrics, predictions = evaluate(batch3, ['--backend', 'aoti', '--package', package],
                                    tmp_path / 'work')
    assert 'accuracy/top1' in metrics and len(predictions) == 9
    assert (f'{package} takes batches of 1 (exported without --dynamic): testing with '
            'batch_size=1') in capsys.readouterr().out


def test_images_the_package_does_not_take_give_one_line(classifier, tmp_path, capsys):
    config_file, _, package, _ = classifier

    def crop_32(cfg):
        cfg.test_dataloader.dataset.pipeline[2].crop_size = 32

    small = _variant(config_file, tmp_path / 'small.py', crop_32)
    assert run_tool('test.py', small, '--backend', 'aoti', '--package', package,
                    '--work-dir', tmp_path / 'work') == 1
    message = capsys.readouterr().err.removesuffix('\n')  # the interpreter's line end
    assert message.startswith('error: ') and '\n' not in message
    assert ('takes input of shape (1, 3, 64, 64), got (1, 3, 32, 32); export with --dynamic '
            'for other batch and image sizes') in message


def test_a_package_of_other_num_classes_is_refused(classifier, tmp_path):
    config_file, _, package, _ = classifier
    five = _variant(config_file, tmp_path / 'five.py',
                    lambda cfg: cfg.model.head.update(num_classes=5))
    with pytest.raises(ValueError, match=r'exported with head\.num_classes=3, but the config '
                       r'has head\.num_classes=5; give the config it was exported from'):
        run_tool('test.py', five, '--backend', 'aoti', '--package', package)


# --- without Python ----------------------------------------------------------------------


@pytest.fixture(scope='module')
def runner(tmp_path_factory):
    """The C++ runner, built once (cmake + make: about 15 s on 2 cores), and the op library."""
    library = runner_op_library()
    if library is None:
        pytest.skip('the op library is not built (MMREDNET_WITH_EXT=0 or no build_ext)')
    source = os.path.join(ROOT, 'tools', 'deployment', 'cpp')
    return build_runner(source, str(tmp_path_factory.mktemp('aoti_runner'))), library


@pytest.mark.parametrize('model', ['classifier', 'segmentor'])
def test_cpp_runner_reproduces_python(model, runner, request, tmp_path):
    _, _, package, _ = request.getfixturevalue(model)
    graph = load_package(package)['main']
    x = torch.randn(1, 3, 64, 128) if model == 'segmentor' else torch.randn(1, 3, 64, 64)
    expected = [t for group in graph(x) for t in group]
    got = run_package(*runner, package, x, str(tmp_path), threads=torch.get_num_threads())
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_cpp_runner_runs_the_fused_op(runner, tmp_path):
    """A package that calls the fused op (stride 1 with the span's bias, stride 2
    without) gives in the runner, without Python, what it gives in Python, and eager's."""
    module = nn.Sequential(FusedInvolution(stride=1, bias=True),
                           FusedInvolution(stride=2, bias=False)).eval()
    x = torch.randn(1, 16, 13, 10)
    package = temporary_package(module, x, str(tmp_path), 'fused')
    assert PackageInfo.read(package).ops == ['mmrednet::involution_fused']
    [[expected]] = load_package(package)['main'](x)
    [got] = run_package(*runner, package, x, str(tmp_path), threads=torch.get_num_threads())
    torch.testing.assert_close(got, expected, atol=0, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(got, module(x), atol=1e-5, rtol=1e-5)


def test_fresh_process_runs_the_package_with_only_the_op_library(classifier, runner, tmp_path):
    """No mmrednet in the process: torch, the op library and the package, loaded by
    PyTorch's documented call (the main graph is its default model, ``model``), with no
    "outdated pt2" warning."""
    _, _, package, _ = classifier
    _, library = runner
    x = torch.randn(1, 3, 64, 64)
    torch.save(x, tmp_path / 'x.pt')
    script = (
        'import sys, torch\n'
        'torch.ops.load_library(sys.argv[1])\n'
        'model = torch._inductor.aoti_load_package(sys.argv[2])\n'
        'torch.save(model(torch.load(sys.argv[3])), sys.argv[4])\n'
        'assert "mmrednet" not in sys.modules\n')
    done = subprocess.run([sys.executable, '-c', script, library, package, str(tmp_path / 'x.pt'),
                           str(tmp_path / 'y.pt')], env=dict(os.environ, PYTHONPATH=''),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'outdated' not in done.stderr, done.stderr[-3000:]
    [[expected]] = load_package(package)['main'](x)
    torch.testing.assert_close(torch.load(tmp_path / 'y.pt'), expected, atol=0, rtol=0)


def test_the_older_model_names_build_the_backend_neutral_model(classifier):
    # A config the Runner saved (type='mmrednet.AOTIImageClassifier', package=...)
    # builds again, as the backend-neutral model; so does the onnxruntime name.
    config_file, _, package, _ = classifier
    from mmengine.registry import init_default_scope

    from mmrednet.deployment.runtime.classifier import DeployedImageClassifier
    from mmrednet.registry import MODELS
    model_cfg = Config.fromfile(config_file).model
    init_default_scope('mmpretrain')
    model = MODELS.build(dict(model_cfg, type='mmrednet.AOTIImageClassifier', package=package))
    assert type(model) is DeployedImageClassifier and set(model.graphs) == {'main'}
    with pytest.raises(TypeError, match='ONNXRuntimeImageClassifier needs onnx_file='):
        MODELS.build(dict(model_cfg, type='mmrednet.ONNXRuntimeImageClassifier'))
    code = ('from mmrednet.deployment.runtime import detectors, segmentor\n'
            'from mmrednet.registry import MODELS\n'
            'for name in ("EncoderDecoder", "SingleStageDetector", "TwoStageDetector"):\n'
            '    for prefix in ("ONNXRuntime", "AOTI", "Deployed"):\n'
            '        assert MODELS.get(prefix + name) is not None, prefix + name\n'
            'assert MODELS.get("ONNXRuntimeRoIHead") is MODELS.get("DeployedRoIHead")\n')
    subprocess.run([sys.executable, '-c', code], check=True, env=dict(os.environ, PYTHONPATH=ROOT))
