"""The pieces of mmrednet.engine: the file backend, the checkpoint hook, random states, setup."""
import io
import os
import random
import signal
import stat
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger

from mmrednet.engine import (
    AtomicLocalBackend,
    CheckpointHook,
    PreemptionHook,
    add_resume_hooks,
    get_random_state,
    set_random_state,
)
from mmrednet.engine.hooks.exact_resume_hook import _checked
from mmrednet.engine.hooks.preemption_hook import _requeue_slurm_job


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_the_checkpoint_backend_writes_whole_files_with_a_new_files_mode(tmp_path, umask_027,
                                                                          monkeypatch):
    backend = AtomicLocalBackend()
    backend.put(b'data', tmp_path / 'sub' / 'new.pth')  # the directory is created
    backend.put_text('text', tmp_path / 'last_checkpoint')
    assert (tmp_path / 'sub' / 'new.pth').read_bytes() == b'data'
    assert (tmp_path / 'last_checkpoint').read_text() == 'text'
    assert stat.S_IMODE(os.stat(tmp_path / 'sub' / 'new.pth').st_mode) == 0o640  # not 0600

    def interrupted(fd):
        raise KeyboardInterrupt  # stands in for the end of the process

    monkeypatch.setattr(os, 'fsync', interrupted)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'half of a new one', tmp_path / 'sub' / 'new.pth')
    assert (tmp_path / 'sub' / 'new.pth').read_bytes() == b'data'
    assert os.listdir(tmp_path / 'sub') == ['new.pth']


class _Runner(SimpleNamespace):
    """What CheckpointHook uses of a Runner; save_checkpoint writes through the backend."""

    def save_checkpoint(self, out_dir, filename, file_client_args=None, backend_args=None,
                        **kwargs):
        from mmengine.fileio import get_file_backend
        backend = get_file_backend(out_dir, backend_args=backend_args)
        backend.put(self.content, backend.join_path(out_dir, filename))


def test_checkpoint_hook_keeps_the_last_complete_checkpoint(tmp_path):
    """max_keep_ckpts=1: mmengine removes epoch_1.pth before it writes epoch_2.pth, so a kill
    while writing left no checkpoint, and last_checkpoint named a removed file."""
    runner = _Runner(work_dir=str(tmp_path), logger=MMLogger.get_current_instance(),
                     message_hub=MessageHub.get_instance('checkpoint_hook_test'),
                     content=b'epoch 1')
    hook = CheckpointHook(interval=1, max_keep_ckpts=1)
    hook.before_train(runner)
    hook._save_checkpoint_with_step(runner, 1, dict(epoch=1, iter=3))
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')

    runner.content = None  # bytes expected: writing epoch_2.pth fails half-way
    with pytest.raises(TypeError):
        hook._save_checkpoint_with_step(runner, 2, dict(epoch=2, iter=6))
    assert (tmp_path / 'epoch_1.pth').read_bytes() == b'epoch 1'
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_1.pth')

    # The run resumed from epoch_1.pth (its message hub: keep_ckpt_ids [1]) after a kill that
    # left a temporary file: that is removed when training starts, epoch_1.pth once
    # epoch_2.pth and last_checkpoint are written.
    (tmp_path / f'.epoch_2.pth.{uuid.uuid4().hex}.tmp').write_bytes(b'half')
    runner.message_hub.update_info('keep_ckpt_ids', [1])
    runner.content = b'epoch 2'
    hook = CheckpointHook(interval=1, max_keep_ckpts=1)
    hook.before_train(runner)
    assert sorted(os.listdir(tmp_path)) == ['epoch_1.pth', 'last_checkpoint']
    hook._save_checkpoint_with_step(runner, 2, dict(epoch=2, iter=6))
    assert sorted(os.listdir(tmp_path)) == ['epoch_2.pth', 'last_checkpoint']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'epoch_2.pth')


def test_checkpoint_hook_leaves_remote_and_explicit_backends_alone():
    assert CheckpointHook(interval=1).backend_args == dict(backend='mmrednet_atomic_local')
    assert CheckpointHook(out_dir='s3://bucket/ckpts').backend_args is None
    petrel = dict(backend='petrel')
    assert CheckpointHook(backend_args=petrel).backend_args == petrel


def _draws() -> list:
    return [random.random(), float(np.random.rand()), float(np.random.randn()),
            float(torch.rand(1)), random.gauss(0, 1)]


def test_random_state_round_trips_through_a_weights_only_file():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)  # a cached Gaussian in both generators
    np.random.randn()
    buffer = io.BytesIO()
    torch.save(get_random_state(), buffer)
    expected = _draws()
    buffer.seek(0)
    set_random_state(torch.load(buffer, weights_only=True))  # no extra allowed class
    assert _draws() == expected


@pytest.mark.gpu
def test_cuda_random_state_round_trips():
    torch.rand(1, device='cuda')  # CUDA initialised: its generators are part of the state
    state = get_random_state()
    assert len(state['cuda']) == torch.cuda.device_count()
    expected = torch.rand(4, device='cuda')
    set_random_state(state)
    assert torch.equal(torch.rand(4, device='cuda'), expected)


def _corrupt(state: dict, path: str, value) -> dict:
    node = state
    *parents, leaf = path.split('.')
    for key in parents:
        node = node[key]
    node[leaf] = value
    return state


@pytest.mark.parametrize('path, value, message', [
    ('python.words', torch.zeros(3, dtype=torch.int64), 'python.words'),
    ('python.words', torch.full((625, ), 2**33), 'python.words'),
    ('numpy.keys', [1, 2], 'numpy.keys'),
    ('numpy.pos', 10**6, 'numpy.pos'),
    ('numpy.gauss', 'x', 'numpy.gauss'),
    ('torch', torch.zeros(7, dtype=torch.uint8), 'torch'),
    ('cuda', 'no', 'cuda'),
])
def test_a_bad_random_state_is_refused_before_anything_changes(path, value, message):
    state = get_random_state()
    reference = get_random_state()
    with pytest.raises(ValueError, match=message.replace('.', r'\.')):
        set_random_state(_corrupt(state, path, value))
    after = get_random_state()
    assert torch.equal(after['torch'], reference['torch'])
    assert torch.equal(after['python']['words'], reference['python']['words'])


@pytest.mark.parametrize('entry, message', [
    ('not a dict', 'must be a dict'),
    (dict(iter=6, batches=0, random_state=[], epoch_start=None), 'one random state'),
    (dict(iter=5, batches=0, random_state=['x'], epoch_start=None), 'iteration 5'),
    (dict(iter=6, batches=-1, random_state=['x'], epoch_start=None), 'batches'),
    (dict(iter=6, batches=0, random_state=['x'], epoch_start=None), 'random state must be'),
    (dict(iter=6, batches=2, random_state=None, epoch_start=None), 'epoch_start'),
])
def test_a_bad_exact_resume_entry_is_refused(entry, message):
    if isinstance(entry, dict) and entry['random_state'] is None:
        entry['random_state'] = [get_random_state()]  # valid: the mid-epoch state is missing
    with pytest.raises(ValueError, match=message):
        _checked(entry, 6)


def test_preemption_hook_checks_its_signals():
    hook = PreemptionHook(signals=['TERM', 'SIGUSR2', int(signal.SIGUSR1)],
                          requeue_signals='usr2')
    assert hook.signals == (signal.SIGTERM, signal.SIGUSR2, signal.SIGUSR1)
    assert hook.requeue_signals == (signal.SIGUSR2, )
    for kwargs, message in ((dict(signals='SIGNOPE'), "signals must hold.*'SIGNOPE'"),
                            (dict(signals=[True]), 'signals must hold'),
                            (dict(signals=['SIGKILL']), 'SIGKILL cannot be caught'),
                            (dict(requeue_signals=[10**6]), 'requeue_signals must hold'),
                            (dict(signals='TERM'), 'requeue_signals must be among')):
        with pytest.raises(ValueError, match=message):
            PreemptionHook(**kwargs)


def _fake_scontrol(tmp_path, monkeypatch):
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text('#!/bin/sh\nprintf "%s\\n" "$@" >> "$SCONTROL_RECORD"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    monkeypatch.setenv('SCONTROL_RECORD', str(tmp_path / 'record'))
    for name in ('SLURM_JOB_ID', 'SLURM_ARRAY_JOB_ID', 'SLURM_ARRAY_TASK_ID'):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / 'record'


def test_requeue_names_the_job_or_the_array_task(tmp_path, monkeypatch):
    record = _fake_scontrol(tmp_path, monkeypatch)
    _requeue_slurm_job()  # not a Slurm job: nothing
    monkeypatch.setenv('SLURM_JOB_ID', '1; touch pwned')
    _requeue_slurm_job()  # not a job id: refused
    assert not record.exists()
    monkeypatch.setenv('SLURM_JOB_ID', '77')
    _requeue_slurm_job()
    monkeypatch.setenv('SLURM_ARRAY_JOB_ID', '70')
    monkeypatch.setenv('SLURM_ARRAY_TASK_ID', '3')
    _requeue_slurm_job()
    assert record.read_text().splitlines() == ['requeue', '77', 'requeue', '70_3']


def test_add_resume_hooks_shows_them_in_the_config_and_lets_users_switch_them_off():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2))))
    add_resume_hooks(cfg)
    assert cfg.default_hooks == dict(
        checkpoint=dict(type='mmrednet.CheckpointHook', interval=2),
        exact_resume=dict(type='mmrednet.ExactResumeHook'),
        preemption=dict(type='mmrednet.PreemptionHook'))
    assert 'mmrednet.PreemptionHook' in cfg.pretty_text
    add_resume_hooks(cfg)  # idempotent
    assert len(cfg.default_hooks) == 3

    cfg = Config(dict(default_hooks=dict(
        checkpoint=dict(type='mmengine.CheckpointHook'), exact_resume=None,
        preemption=dict(type='mmrednet.PreemptionHook', signals='USR2', requeue_signals=()))))
    add_resume_hooks(cfg)
    assert cfg.default_hooks == dict(
        checkpoint=dict(type='mmengine.CheckpointHook'),
        preemption=dict(type='mmrednet.PreemptionHook', signals='USR2', requeue_signals=()))

    cfg = Config(dict(custom_hooks=[dict(type='mmrednet.PreemptionHook', signals='USR2',
                                         requeue_signals=())]))
    add_resume_hooks(cfg)  # not twice
    assert 'preemption' not in cfg.default_hooks and 'exact_resume' in cfg.default_hooks

    cfg = Config(dict())  # mmengine's default checkpoint hook (every epoch) becomes ours
    add_resume_hooks(cfg)
    assert cfg.default_hooks.checkpoint == dict(type='mmrednet.CheckpointHook', interval=1)
    cfg = Config(dict(default_hooks=dict(checkpoint=None)))
    add_resume_hooks(cfg)
    assert cfg.default_hooks.checkpoint is None
