"""tools/train.py --resume ends with the weights of a run never stopped, bit for bit on the CPU.

The classification demo with its augmentation on (random resized crop, random
flip), validation after every epoch, without and with dataloader workers.
"""
import os.path as osp
import sys

import pytest
import torch

from .det_helpers import ROOT
from .resume_helpers import demo_cfg, differing, tiny_shapes_imagenet, trained_state, write_cfg

sys.path.insert(0, osp.join(ROOT, 'tools'))
import train as train_tool  # noqa: E402

sys.path.pop(0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module', autouse=True)
def _on_the_cpu():
    """Train on the CPU also on a machine with a GPU (bit for bit is a CPU promise)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, 'is_available', lambda: False)
        yield


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_shapes_imagenet(tmp_path_factory)


@pytest.fixture(scope='module', params=[0, 2], ids=['main-process', '2-workers'])
def reference(request, shapes, tmp_path_factory):
    """An uninterrupted 3-epoch run: a checkpoint each epoch, and mid-epoch ones (every 4 iters)."""
    tmp = tmp_path_factory.mktemp(f'reference{request.param}')
    cfg = demo_cfg(shapes, str(tmp / 'work'), workers=request.param)
    # mmengine's hook, writing to work/iters/work: iter_4.pth is batch 1 of epoch 2's 3.
    cfg.custom_hooks = [dict(type='CheckpointHook', by_epoch=False, interval=4,
                             out_dir=str(tmp / 'work' / 'iters'))]
    config = write_cfg(cfg, tmp / 'cfg.py')
    train_tool.main([config])
    return config, tmp / 'work'


def _resume(config: str, checkpoint, work_dir) -> dict:
    train_tool.main([config, '--resume', str(checkpoint), '--work-dir', str(work_dir)])
    return trained_state(work_dir / 'epoch_3.pth')


def test_resumed_after_an_epoch_ends_as_never_stopped(reference, tmp_path):
    config, work = reference
    expected = trained_state(work / 'epoch_3.pth')
    # The comparison means something: training changed the weights after epoch 1.
    assert len(differing(trained_state(work / 'epoch_1.pth'), expected)) > 200
    assert differing(expected, _resume(config, work / 'epoch_1.pth', tmp_path / 'r')) == []


def test_resumed_mid_epoch_ends_as_never_stopped(reference, tmp_path):
    """mmengine's epoch loop restarts a resumed epoch: the first one continues at the next batch."""
    config, work = reference
    mid_epoch = work / 'iters' / 'work' / 'iter_4.pth'
    expected = trained_state(work / 'epoch_3.pth')
    assert differing(expected, _resume(config, mid_epoch, tmp_path / 'r')) == []


def test_iteration_based_run_resumed_ends_as_never_stopped(shapes, tmp_path):
    """Resumed after iteration 4 (written after the validation at 3): mmengine loads the trained
    batches again to skip them, and the generators are restored after that (Mixup's draws)."""
    cfg = demo_cfg(shapes, str(tmp_path / 'work'), iters=8)
    config = write_cfg(cfg, tmp_path / 'cfg.py')
    train_tool.main([config])
    expected = trained_state(tmp_path / 'work' / 'iter_8.pth')
    assert len(differing(trained_state(tmp_path / 'work' / 'iter_4.pth'), expected)) > 200
    train_tool.main([config, '--resume', str(tmp_path / 'work' / 'iter_4.pth'),
                     '--work-dir', str(tmp_path / 'r')])
    assert differing(expected, trained_state(tmp_path / 'r' / 'iter_8.pth')) == []
