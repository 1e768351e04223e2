"""mmengine checkpoints load under torch's weights_only default through mmengine's
checkpoint loading; nothing else opens up, in this process or any other."""
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint, save_checkpoint

import mmrednet  # noqa: F401  (scopes mmengine's checkpoint loaders)


def test_mmengine_checkpoint_with_message_hub_loads(tmp_path):
    hub = MessageHub.get_instance('checkpoint-safety-test')
    hub.update_scalar('train/loss', np.float32(0.5))
    hub.update_scalar('train/lr', 0.02)
    hub.update_info('iter', 7)
    path = tmp_path / 'iter_7.pth'
    save_checkpoint({'meta': {'iter': 7, 'seed': np.int64(3), 'hist': np.arange(3)},
                     'state_dict': {'w': torch.ones(2)}, 'message_hub': hub.state_dict()},
                    str(path))
    allowed = set(torch.serialization.get_safe_globals())
    # mmengine's loader calls torch.load with torch's default: weights_only=True.
    checkpoint = _load_checkpoint(str(path), map_location='cpu')
    assert checkpoint['meta']['iter'] == 7 and checkpoint['meta']['hist'].tolist() == [0, 1, 2]
    assert checkpoint['meta']['seed'] == 3
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == pytest.approx(0.5)
    assert set(torch.serialization.get_safe_globals()) == allowed  # the load's allowance only
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # a plain torch.load is torch's own


class _GetattrGadget:
    """A pickle that reaches ``getattr`` for something other than HistoryBuffer's stats."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


class _SystemGadget:

    def __reduce__(self):
        import os
        return os.system, ('true', )


@pytest.mark.parametrize('gadget,match', [(_GetattrGadget, 'refusing to unpickle getattr'),
                                          (_SystemGadget, 'system')])
def test_other_globals_stay_refused(gadget, match, tmp_path):
    path = tmp_path / 'gadget.pth'
    torch.save({'x': gadget()}, path)
    with pytest.raises(pickle.UnpicklingError, match=match):
        _load_checkpoint(str(path), map_location='cpu')


def test_loads_in_a_process_that_made_no_history_buffer(tmp_path):
    """Inference-only processes have not registered mmengine's statistics yet."""
    hub = MessageHub.get_instance('checkpoint-safety-fresh')
    hub.update_scalar('loss', 1.0)
    path = tmp_path / 'hub.pth'
    torch.save({'message_hub': hub.state_dict()}, path)
    code = ('import mmrednet; from mmengine.runner.checkpoint import _load_checkpoint; '
            f'print(_load_checkpoint({str(path)!r})["message_hub"]["log_scalars"]["loss"].mean())')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith('1.0')


# What numpy's own pickle of an array names: torch refuses it by default.
_CRAFTED = """
import io, pickle, numpy as np, torch
import torch.distributed.tensor  # torch allows its DTensor classes when this is imported
buffer = io.BytesIO()
torch.save({'w': np.zeros(3)}, buffer)
def refused():
    try:
        torch.load(io.BytesIO(buffer.getvalue()))
    except pickle.UnpicklingError:
        return True
    return False
before, allowed = refused(), set(torch.serialization.get_safe_globals())
import mmrednet
print(before, refused(), set(torch.serialization.get_safe_globals()) == allowed)
"""


def test_importing_mmrednet_leaves_torchs_allow_list_alone():
    """In a fresh process: refused before ``import mmrednet``, refused after it."""
    out = subprocess.run([sys.executable, '-c', _CRAFTED], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ['True', 'True', 'True'], out.stdout + out.stderr


def test_the_scope_keeps_what_the_user_allowed(tmp_path):
    """A scoped load adds nothing to torch's list, and so removes nothing from it either."""
    from mmrednet.utils import load_mmengine_checkpoint
    path = tmp_path / 'hub.pth'
    torch.save({'hub': HistoryBuffer([1.0], [1]), 'hist': np.arange(2)}, path)
    before = list(torch.serialization.get_safe_globals())
    torch.serialization.add_safe_globals([np.dtype])
    seen = []

    def load(*args, **kwargs):  # what torch's list is while a load runs
        seen.append(set(torch.serialization.get_safe_globals()))
        torch.serialization.add_safe_globals([HistoryBuffer])  # the user's, meanwhile
        return torch.load(*args, **kwargs)

    try:
        # Nested: one mmengine load inside another.
        checkpoint = load_mmengine_checkpoint(load_mmengine_checkpoint, load, path)
        assert checkpoint['hist'].tolist() == [0, 1] and checkpoint['hub'].current() == 1.0
        assert seen == [set(before) | {np.dtype}]
        allowed = torch.serialization.get_safe_globals()
        assert np.dtype in allowed and HistoryBuffer in allowed
    finally:  # the process-wide list as it was, whatever failed
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)


class _Counter(BaseModel):
    """A one-parameter model the Runner trains."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        return dict(loss=(self.w * inputs).sum()) if mode == 'loss' else self.w * inputs


class _Iteration(Hook):

    def before_train(self, runner):
        self.start, self.weight = runner.iter, runner.model.w.detach().clone()


def _runner(work_dir, max_iters, **kwargs):
    return Runner(model=_Counter(), work_dir=str(work_dir),
                  train_dataloader=dict(dataset=[dict(inputs=torch.ones(1))] * 4,
                                        sampler=dict(type='DefaultSampler', shuffle=False),
                                        collate_fn=dict(type='default_collate'), batch_size=1),
                  train_cfg=dict(by_epoch=False, max_iters=max_iters),
                  optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
                  default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                                     by_epoch=False)),
                  log_level='WARNING', **kwargs)


def test_a_runner_checkpoint_resumes_and_loads_under_weights_only(tmp_path):
    allowed = set(torch.serialization.get_safe_globals())
    trained = _runner(tmp_path / 'first', 2)
    trained.train()
    checkpoint = tmp_path / 'first' / 'iter_2.pth'
    with pytest.raises(pickle.UnpicklingError):  # message hub, numpy: not torch's to allow
        torch.load(checkpoint)
    for key, path in (('resume', True), ('load_from', str(checkpoint))):
        hook = _Iteration()
        runner = _runner(tmp_path / 'first' if key == 'resume' else tmp_path / key, 3,
                         custom_hooks=[hook], **{key: path})
        runner.train()
        assert hook.start == (2 if key == 'resume' else 0), key
        torch.testing.assert_close(hook.weight, trained.model.w.detach())
    # Nothing of the loads' stays allowed (torch adds its own when it imports dynamo).
    added = set(torch.serialization.get_safe_globals()) - allowed
    assert all(g.__module__.startswith('torch.') for g in added), added
    with pytest.raises(pickle.UnpicklingError):
        torch.load(checkpoint)
