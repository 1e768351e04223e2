"""tools/train.py --resume ends with the weights of a run never stopped, bit for bit on the CPU.

The classification demo with its augmentation on (random resized crop, random
flip, Mixup), validation after every epoch, without and with dataloader workers.
"""

import pytest
import torch

from .resume_helpers import demo_cfg, differing, tiny_shapes_imagenet, trained_state, write_cfg
from .tools import run_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module', autouse=True)
def _on_the_cpu():
    """Train on the CPU also on a machine with a GPU (bit for bit is a CPU promise)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, 'is_available', lambda: False)
        yield


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_shapes_imagenet(tmp_path_factory.getbasetemp())


@pytest.mark.parametrize('workers', [0, 2], ids=['main-process', '2-workers'])
def test_resumed_runs_end_as_never_stopped(shapes, tmp_path, workers):
    """Resumed after epoch 1, and in the middle of epoch 2 (mmengine's epoch loop would
    restart that epoch: the first one resumed continues at the next batch)."""
    cfg = demo_cfg(shapes, str(tmp_path / 'work'), workers=workers)
    # Also mmengine's hook, every 4 iterations into work/iters/work: iter_4.pth is after
    # batch 1 of epoch 2's 3.
    cfg.custom_hooks = [dict(type='CheckpointHook', by_epoch=False, interval=4,
                             out_dir=str(tmp_path / 'work' / 'iters'))]
    config = write_cfg(cfg, tmp_path / 'cfg.py')
    assert run_tool('train.py', config) == 0
    work = tmp_path / 'work'
    expected = trained_state(work / 'epoch_3.pth')
    # The comparison means something: training changed the weights after epoch 1.
    assert len(differing(trained_state(work / 'epoch_1.pth'), expected)) > 200
    for name, checkpoint in (('after-epoch-1', work / 'epoch_1.pth'),
                             ('mid-epoch-2', work / 'iters' / 'work' / 'iter_4.pth')):
        resumed = tmp_path / name
        assert run_tool('train.py', config, '--resume', checkpoint, '--work-dir', resumed) == 0
        assert differing(expected, trained_state(resumed / 'epoch_3.pth')) == [], name


def test_iteration_based_run_resumed_ends_as_never_stopped(shapes, tmp_path):
    """Resumed after iteration 4 (written after the validation at 3): mmengine loads the trained
    batches again to skip them, and the generators are restored after that (Mixup's draws)."""
    cfg = demo_cfg(shapes, str(tmp_path / 'work'), iters=8)
    config = write_cfg(cfg, tmp_path / 'cfg.py')
    assert run_tool('train.py', config) == 0
    expected = trained_state(tmp_path / 'work' / 'iter_8.pth')
    assert len(differing(trained_state(tmp_path / 'work' / 'iter_4.pth'), expected)) > 200
    assert run_tool('train.py', config, '--resume', tmp_path / 'work' / 'iter_4.pth',
                    '--work-dir', tmp_path / 'r') == 0
    assert differing(expected, trained_state(tmp_path / 'r' / 'iter_8.pth')) == []
