"""Kill a training run with SIGKILL again and again, restarting it with ``--resume`` each time.

Run by tests/test_preemption.py as ``python -m tests.kill_resume_driver PLAN.json``
from the repository root. Each run is ``tools/train.py`` (run in-process) in a child
forked from this process, which has imported everything once (a fresh
interpreter per restart would spend most of the test importing torch and
mmengine). The plan (JSON) holds:

- ``config``: the config to train; ``reference_work_dir``:
  where an uninterrupted run trains first; ``work_dir``: where the killed runs train.
- ``kills``: a list of

  - ``{"fraction": f}``: SIGKILL from this process after ``f`` times the
    uninterrupted run's duration (so also while the run starts);
  - ``{"iteration": k, "delay": d}``: SIGKILL ``d`` iteration-times (the
    uninterrupted run's mean time from the start of one training iteration to the
    next, validations and checkpoints included) after the child starts
    training iteration ``k`` (counted from 0 over the whole run; the first one
    it trains if it resumed later): it lands in that iteration, a later one, a
    validation or a checkpoint write;
  - ``{"at": phase, "call": n}``: the child kills itself the ``n``-th time it
    reaches ``phase``: ``mid_write`` (half of a checkpoint or of
    ``last_checkpoint`` on disk, before the fsync), ``before_rename`` (complete
    but not renamed), ``prune`` (before an old checkpoint is removed),
    ``validation`` (a validation iteration).

It writes ``results.json`` beside the plan: per kill, how the child ended and
what ``last_checkpoint`` named afterwards (and whether that file loaded);
then the exit status of the last, uninterrupted run.
"""
import json
import os
import os.path as osp
import signal
import sys
import threading
import time
import traceback

import torch

# What tools/train.py imports, imported once here: each forked child finds it loaded.
import mmrednet.apis  # noqa: F401
from mmrednet.engine import fileio

from .tools import run_tool


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_on_call(owner, name: str, call: int, applies=lambda *a, **k: True) -> None:
    """Make ``owner.name`` SIGKILL this process on its ``call``-th call that ``applies``."""
    original = getattr(owner, name)
    calls = [0]

    def wrapper(*args, **kwargs):
        if applies(*args, **kwargs):
            calls[0] += 1
            if calls[0] == call:
                _arm_effect(name, args)
                _die()
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


def _arm_effect(name: str, args) -> None:
    if name == 'fsync':  # leave only half of what was written on disk
        fd = args[0]
        os.ftruncate(fd, os.fstat(fd).st_size // 2)


def _is_temporary_fd(fd, *_) -> bool:
    return fileio.is_temporary(os.readlink(f'/proc/self/fd/{fd}'))


def _arm(kill: dict) -> None:
    from mmengine.fileio import LocalBackend
    from mmengine.runner.loops import EpochBasedTrainLoop, ValLoop
    if 'iteration' in kill:
        original, armed = EpochBasedTrainLoop.run_iter, []

        def run_iter(self, *args, **kwargs):
            if not armed and self.iter >= kill['iteration']:
                armed.append(threading.Timer(kill['seconds'], _die))
                armed[0].start()
            return original(self, *args, **kwargs)

        EpochBasedTrainLoop.run_iter = run_iter
        return
    phase, call = kill['at'], kill['call']
    if phase == 'mid_write':
        _kill_on_call(os, 'fsync', call, _is_temporary_fd)
    elif phase == 'before_rename':
        _kill_on_call(os, 'replace', call, lambda src, *_: fileio.is_temporary(src))
    elif phase == 'prune':
        _kill_on_call(LocalBackend, 'remove', call)
    elif phase == 'validation':
        _kill_on_call(ValLoop, 'run_iter', call)
    else:
        raise ValueError(f'unknown phase {phase!r}')


def _record_iteration_starts() -> list:
    """Make this process note when each training iteration starts (``time.monotonic``)."""
    from mmengine.runner.loops import EpochBasedTrainLoop
    original, starts = EpochBasedTrainLoop.run_iter, []

    def run_iter(self, *args, **kwargs):
        starts.append(time.monotonic())
        return original(self, *args, **kwargs)

    EpochBasedTrainLoop.run_iter = run_iter
    return starts


def _run(argv, kill=None, starts_file=None) -> int:
    """Fork a child that runs ``tools/train.py ARGV``; return its wait status. With
    ``starts_file``, the child writes the start times of its training iterations there."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code, starts = 1, _record_iteration_starts() if starts_file else None
        try:
            if kill is not None and 'after' not in kill:
                _arm(kill)
            code = run_tool('train.py', *argv)
        except BaseException:
            traceback.print_exc()
        finally:
            if starts_file:
                with open(starts_file, 'w') as f:
                    json.dump(starts, f)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    if kill is not None and 'after' in kill:
        deadline = time.monotonic() + kill['after']
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def _last_checkpoint(work_dir: str) -> dict:
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(pointer):
        return dict(last_checkpoint=None)
    with open(pointer) as f:
        path = f.read()
    try:
        meta = torch.load(path, map_location='cpu', weights_only=False)['meta']
        return dict(last_checkpoint=path, loads=True, iter=meta['iter'])
    except Exception as exc:  # noqa: BLE001  (what a resume would run into)
        return dict(last_checkpoint=path, loads=False, error=repr(exc))


def main(plan_path: str) -> None:
    with open(plan_path) as f:
        plan = json.load(f)
    config = plan['config']
    start = time.monotonic()
    starts_file = osp.join(osp.dirname(plan_path), 'reference_iterations.json')
    reference = _run([config, '--work-dir', plan['reference_work_dir']],
                     starts_file=starts_file)
    with open(starts_file) as f:
        starts = json.load(f)
    # Timed from the training iterations themselves, not the whole run: start-up (imports,
    # building the model) takes most of a small run, and more of it the busier the machine.
    results = dict(reference_status=reference, reference_seconds=time.monotonic() - start,
                   iteration_seconds=(starts[-1] - starts[0]) / (len(starts) - 1), kills=[])
    argv = [config, '--work-dir', plan['work_dir'], '--resume']
    for kill in plan['kills']:
        if 'fraction' in kill:
            kill = dict(kill, after=kill['fraction'] * results['reference_seconds'])
        elif 'delay' in kill:
            kill = dict(kill, seconds=kill['delay'] * results['iteration_seconds'])
        status = _run(argv, kill)
        results['kills'].append(dict(kill=kill, status=status,
                                     signaled=os.WIFSIGNALED(status)
                                     and os.WTERMSIG(status) == signal.SIGKILL,
                                     **_last_checkpoint(plan['work_dir'])))
    results['final_status'] = _run(argv)
    with open(osp.join(osp.dirname(plan_path), 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)


if __name__ == '__main__':
    main(sys.argv[1])
