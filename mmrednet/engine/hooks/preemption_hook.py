"""Stop for a signal: a checkpoint at the next iteration boundary, a Slurm requeue, a clean exit."""
import logging
import os
import re
import signal
import subprocess
import threading
from typing import Dict, List, Sequence, Tuple, Union

import torch
from mmengine.dist import all_reduce, barrier, get_world_size, is_main_process
from mmengine.fileio import join_path
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmrednet.registry import HOOKS

from ..fileio import ATOMIC_BACKEND, publish_checkpoint
from .checkpoint_hook import INTERRUPTED_CHECKPOINT

SignalNames = Union[str, int, Sequence[Union[str, int]]]


class TrainingInterrupted(Exception):
    """Raised by :class:`PreemptionHook` once the checkpoint is written and the job requeued.

    ``tools/train.py`` exits with ``128 + signum``, the status of a process ended by that signal.

    Attributes:
        signum (int): The signal that stopped the run.
        checkpoint (str): The checkpoint written at the iteration boundary.
    """

    def __init__(self, signum: int, checkpoint: str) -> None:
        super().__init__(f'training stopped by {signal.Signals(signum).name} after writing '
                         f'{checkpoint}')
        self.signum = signum
        self.checkpoint = checkpoint


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On a signal, save a checkpoint at the next iteration boundary, requeue on Slurm, and stop.

    Clusters stop jobs with a signal and kill them a grace period later (Slurm:
    SIGTERM on preemption and ``scancel``; the signal chosen with
    ``--signal=[B:]USR1@SECONDS`` that many seconds before the time limit). After
    the training iteration in progress, the run writes ``iter_<N>.pth`` (in the
    CheckpointHook's ``out_dir``, atomically) and points ``last_checkpoint`` at it
    (with ``max_keep_ckpts``, :class:`~mmrednet.engine.CheckpointHook` removes
    it once the resumed run has written a later checkpoint).
    Under Slurm (``SLURM_JOB_ID`` set), if the signal is one of ``requeue_signals``,
    rank 0 then runs ``scontrol requeue <job id>`` (as PyTorch Lightning does on
    SIGUSR1), so that the job starts again and resumes with
    ``tools/train.py --resume`` (``tools/slurm_train.sh`` passes it). Then it
    raises :class:`TrainingInterrupted`, which ``tools/train.py`` turns into exit
    status ``128 + signum`` (143 for SIGTERM): stopped, not finished, as
    Lightning exits non-zero on SIGTERM.

    SIGTERM does not requeue by default: ``scancel`` sends it too, and a
    cancelled job must stay cancelled (a Slurm preemption with
    ``PreemptMode=REQUEUE`` requeues the job itself).

    In distributed runs the ranks agree after every training iteration (an
    all-reduce of two numbers) whether any of them got a signal, so that all
    stop at the same iteration; all ranks wait until the checkpoint is written
    and the job requeued before they exit. Signals arriving during validation
    are acted on after the next training iteration.

    Args:
        signals (str | int | sequence): The signals to catch (names such as
            ``'SIGTERM'`` or ``'USR1'``, or numbers). Defaults to SIGTERM and SIGUSR1.
        requeue_signals (str | int | sequence): Those of ``signals`` after which
            the Slurm job is requeued. Defaults to SIGUSR1; ``()`` never requeues.
    """

    priority = 'LOWEST'  # after CheckpointHook and ExactResumeHook, after the iteration is logged

    def __init__(self, signals: SignalNames = ('SIGTERM', 'SIGUSR1'),
                 requeue_signals: SignalNames = ('SIGUSR1', )) -> None:
        self.signals = _signal_numbers(signals, 'signals')
        self.requeue_signals = _signal_numbers(requeue_signals, 'requeue_signals')
        others = set(self.requeue_signals) - set(self.signals)
        if others:
            raise ValueError(f'requeue_signals must be among signals {self.signals}, got '
                             f'{sorted(others)} too')
        self._received: List[int] = []
        self._previous: Dict[int, object] = {}

    def _handle(self, signum: int, frame) -> None:
        # Only note it: the iteration in progress finishes, then after_train_iter acts.
        self._received.append(signum)

    def before_train(self, runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            print_log('PreemptionHook: training runs outside the main thread, where Python '
                      'cannot catch signals; a signal stops the run without a checkpoint.',
                      logger='current', level=logging.WARNING)
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def after_train(self, runner) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        signum, requeue = self._agreed()
        if not signum:
            return
        name = signal.Signals(signum).name
        print_log(f'{name} received: saving a checkpoint after iteration {runner.iter + 1}',
                  logger='current', level=logging.WARNING)
        checkpoint = self._save(runner)
        if requeue and is_main_process():
            _requeue_slurm_job()
        barrier()  # no rank exits (srun --kill-on-bad-exit) before the job is requeued
        self._restore_handlers()
        raise TrainingInterrupted(signum, checkpoint)

    def _agreed(self) -> Tuple[int, bool]:
        """The signal any rank received (0 for none), and whether any asks for a requeue."""
        signum = self._received[0] if self._received else 0
        requeue = any(s in self.requeue_signals for s in self._received)
        if get_world_size() > 1:
            flags = torch.tensor([signum, int(requeue)], dtype=torch.int64)
            all_reduce(flags, op='max')
            signum, requeue = int(flags[0]), bool(flags[1])
        return signum, requeue

    @staticmethod
    def _save(runner) -> str:
        """Write ``iter_<N>.pth`` where CheckpointHook writes; point ``last_checkpoint`` at it."""
        hook = next((h for h in runner.hooks if isinstance(h, MMEngineCheckpointHook)), None)
        out_dir = hook.out_dir if hook is not None else runner.work_dir
        backend_args = hook.backend_args if hook is not None else None
        if backend_args is None and '://' not in str(out_dir):
            backend_args = dict(backend=ATOMIC_BACKEND)
        step = runner.iter + 1
        filename = f'iter_{step}.pth'
        path = join_path(out_dir, filename, backend_args=backend_args)
        runner.message_hub.update_info(INTERRUPTED_CHECKPOINT, path)  # removed later, if bounded
        runner.save_checkpoint(
            out_dir, filename, save_optimizer=getattr(hook, 'save_optimizer', True),
            save_param_scheduler=getattr(hook, 'save_param_scheduler', True),
            meta=dict(epoch=runner.epoch, iter=step), by_epoch=False, backend_args=backend_args)
        if is_main_process():
            publish_checkpoint(runner.work_dir, path)
            print_log(f'Saved {path}; resume with tools/train.py CONFIG --resume',
                      logger='current', level=logging.WARNING)
        return path


def _signal_numbers(signals: SignalNames, name: str) -> Tuple[int, ...]:
    """``signals`` as numbers, each one that Python can catch (not SIGKILL or SIGSTOP)."""
    items = [signals] if isinstance(signals, (str, int)) else list(signals)
    numbers = []
    for item in items:
        try:
            if isinstance(item, str):
                text = item.upper()
                number = signal.Signals[text if text.startswith('SIG') else f'SIG{text}']
            elif isinstance(item, int) and not isinstance(item, bool):
                number = signal.Signals(item)
            else:
                raise TypeError
        except (KeyError, ValueError, TypeError):
            raise ValueError(f'{name} must hold signal names (such as SIGTERM or USR1) or '
                             f'numbers, got {item!r}') from None
        if number in (signal.SIGKILL, signal.SIGSTOP):
            raise ValueError(f'{name}: {number.name} cannot be caught; got {item!r}')
        numbers.append(int(number))
    return tuple(dict.fromkeys(numbers))


def _requeue_slurm_job() -> None:
    """``scontrol requeue`` this Slurm job (an array job's task), as PyTorch Lightning does."""
    array_job = os.environ.get('SLURM_ARRAY_JOB_ID')
    if array_job:
        job = f'{array_job}_{os.environ.get("SLURM_ARRAY_TASK_ID", "")}'
    else:
        job = os.environ.get('SLURM_JOB_ID', '')
    if not job:
        return  # not a Slurm job
    if not re.fullmatch(r'[0-9]+(_[0-9]+)?', job):
        print_log(f'Not requeuing: the Slurm job id {job!r} is not a job id', logger='current',
                  level=logging.WARNING)
        return
    try:
        proc = subprocess.run(['scontrol', 'requeue', job], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        print_log(f'Requeuing Slurm job {job} failed: {err}', logger='current',
                  level=logging.WARNING)
        return
    if proc.returncode == 0:
        print_log(f'Requeued Slurm job {job}', logger='current', level=logging.WARNING)
    else:
        print_log(f'Requeuing Slurm job {job} failed (scontrol exit {proc.returncode}): '
                  f'{proc.stderr.strip()}', logger='current', level=logging.WARNING)
