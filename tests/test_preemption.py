"""Runs stopped by signals: SIGKILL at any moment, SIGUSR1 and SIGTERM from a cluster.

Each restart is ``tools/train.py CONFIG --resume``, and the run ends with the
weights of a run never stopped, bit for bit on the CPU.
"""
import json
import os
import os.path as osp
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from mmrednet.engine.fileio import is_temporary

from .det_helpers import ROOT
from .resume_helpers import demo_cfg, differing, tiny_shapes_imagenet, trained_state, write_cfg

pytestmark = pytest.mark.slow

TRAIN = osp.join(ROOT, 'tools', 'train.py')
FAKE_SCONTROL = """#!/usr/bin/env bash
# Stands in for Slurm's scontrol: records its arguments, one per line.
printf '%s\\n' "$@" >> "$SCONTROL_RECORD"
"""


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    return tiny_shapes_imagenet(tmp_path_factory.getbasetemp())


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1', CUDA_VISIBLE_DEVICES='', **extra)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    return env


def test_sigkill_at_random_moments_resumes_to_the_same_weights(shapes, tmp_path):
    """24 seeded random moments and 6 chosen ones (in the middle of writing a checkpoint or
    ``last_checkpoint``, before their rename, before an old checkpoint is removed, during
    validation): after each kill, ``last_checkpoint`` is absent or names a complete checkpoint."""
    cfg = demo_cfg(shapes, str(tmp_path / 'unused'), epochs=5)
    cfg.default_hooks.checkpoint.max_keep_ckpts = 1  # mmengine removed the old one first
    config = write_cfg(cfg, tmp_path / 'cfg.py')
    rng = random.Random(23)
    # Random moments over the training's 15 iterations (in order, so that the kills walk
    # through the whole run: an iteration, then a delay of up to one iteration's time) and
    # a few while the run starts (a fraction of its uninterrupted duration).
    kills = [dict(iteration=k, delay=round(rng.random(), 3))
             for k in sorted(rng.randrange(15) for _ in range(20))]
    for i in range(4):
        kills.insert(6 * i + 1, dict(fraction=round(rng.uniform(0.05, 0.3), 3)))
    chosen = [dict(at='mid_write', call=1), dict(at='before_rename', call=2),
              dict(at='validation', call=1), dict(at='mid_write', call=2),
              dict(at='prune', call=1), dict(at='before_rename', call=1)]
    for i, kill in enumerate(chosen):
        kills.insert(4 * i + 3, kill)
    plan = tmp_path / 'plan.json'
    plan.write_text(json.dumps(dict(config=config, reference_work_dir=str(tmp_path / 'ref'),
                                    work_dir=str(tmp_path / 'work'),
                                    kills=kills)))
    proc = subprocess.run([sys.executable, '-m', 'tests.kill_resume_driver', str(plan)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    assert results['reference_status'] == 0 and results['final_status'] == 0, \
        proc.stderr[-3000:]
    for kill in results['kills']:
        assert kill['last_checkpoint'] is None or kill['loads'], kill
    assert all(k['signaled'] for k in results['kills'] if 'at' in k['kill']), results['kills']
    assert sum(k['signaled'] for k in results['kills']) >= 20, results['kills']
    # The runs made progress between kills: checkpoints of several epochs were resumed.
    assert len({k.get('iter') for k in results['kills']}) >= 3, results['kills']
    expected = trained_state(tmp_path / 'ref' / 'epoch_5.pth')
    assert differing(expected, trained_state(tmp_path / 'work' / 'epoch_5.pth')) == []
    assert not any(is_temporary(name) for name in os.listdir(tmp_path / 'work'))  # swept


def _start(config: str, work_dir, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, TRAIN, config, '--work-dir', str(work_dir),
                             '--resume'], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _wait_for(condition, proc: subprocess.Popen, log_path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f'training ended early:\n{log_path.read_text()[-3000:]}'
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.05)


def test_signals_save_stop_requeue_and_the_job_resumes(shapes, tmp_path):
    """What a Slurm job sees: SIGUSR1 before the time limit (``--signal=USR1@...``) saves a
    checkpoint at the next iteration boundary, requeues the job and exits 128+10; the
    requeued job (same command: ``--resume``) goes on; SIGTERM saves and exits 128+15
    without a requeue (``scancel`` sends it too)."""
    cfg = demo_cfg(shapes, str(tmp_path / 'unused'), epochs=4)
    cfg.default_hooks.checkpoint.max_keep_ckpts = 2
    config = write_cfg(cfg, tmp_path / 'cfg.py')
    scontrol = tmp_path / 'bin' / 'scontrol'
    scontrol.parent.mkdir()
    scontrol.write_text(FAKE_SCONTROL)
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / 'scontrol_args'
    env = _env(SLURM_JOB_ID='4242', SCONTROL_RECORD=str(record),
               PATH=f'{scontrol.parent}{os.pathsep}{os.environ["PATH"]}')
    reference = subprocess.run([sys.executable, TRAIN, config, '--work-dir',
                                str(tmp_path / 'ref')], cwd=ROOT, env=_env(),
                               capture_output=True, text=True, timeout=600, check=False)
    assert reference.returncode == 0, reference.stderr[-3000:]

    work = tmp_path / 'work'
    pointer = work / 'last_checkpoint'
    stops = []
    for signum in (signal.SIGUSR1, signal.SIGTERM):
        log_path = tmp_path / f'{signum.name}.log'
        before = pointer.read_text() if pointer.exists() else None
        with open(log_path, 'w') as log:
            proc = _start(config, work, env, log)
            try:
                # After an epoch's checkpoint: the signal handlers are installed.
                _wait_for(lambda before=before: pointer.exists()
                          and pointer.read_text() != before
                          and 'epoch_' in pointer.read_text(), proc, log_path)
                proc.send_signal(signum)
                assert proc.wait(timeout=300) == 128 + signum, log_path.read_text()[-3000:]
            finally:
                proc.kill()
                proc.wait()
        stops.append(osp.basename(pointer.read_text()))
        assert osp.exists(pointer.read_text())
    assert all(name.startswith('iter_') for name in stops), stops
    assert record.read_text().splitlines() == ['requeue', '4242']  # SIGUSR1's, not SIGTERM's

    with open(tmp_path / 'final.log', 'w') as log:
        assert _start(config, work, env, log).wait(timeout=600) == 0, \
            (tmp_path / 'final.log').read_text()[-3000:]
    expected = trained_state(tmp_path / 'ref' / 'epoch_4.pth')
    assert differing(expected, trained_state(work / 'epoch_4.pth')) == []
    # max_keep_ckpts=2: the checkpoints the signals made are gone once later ones were written.
    assert sorted(n for n in os.listdir(work) if n.endswith('.pth')) == \
        ['epoch_3.pth', 'epoch_4.pth']
