"""mmengine's CheckpointHook with checkpoints that a kill at any moment cannot spoil."""
import os.path as osp
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as MMEngineCheckpointHook

from mmrednet.registry import HOOKS

from ..fileio import ATOMIC_BACKEND, publish_checkpoint, remove_temporaries

# The message hub's record of the checkpoint PreemptionHook wrote (kept in checkpoints).
INTERRUPTED_CHECKPOINT = 'interrupted_ckpt'


@HOOKS.register_module()
class CheckpointHook(MMEngineCheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments), safe against a kill at any moment.

    What a run killed at any moment (SIGKILL, a node failure) leaves behind,
    ``--resume`` can continue from:

    - A local ``out_dir`` without ``backend_args`` is written through
      ``mmrednet_atomic_local`` (:class:`~mmrednet.engine.fileio.AtomicLocalBackend`):
      a temporary file in the same directory, fsynced, renamed over the checkpoint.
    - ``last_checkpoint`` is replaced the same way, once the checkpoint it
      names is complete (mmengine truncates and rewrites it in place).
    - Checkpoints beyond ``max_keep_ckpts`` are removed after that: mmengine
      removes the oldest first, so with ``max_keep_ckpts=1`` a kill while the
      new one is written left no checkpoint at all.
    - Temporary files of writes killed in an earlier run are removed before training.
    - With ``max_keep_ckpts``, the checkpoint a signal made the run write
      (:class:`~mmrednet.engine.PreemptionHook`) is removed once a later one is written.
    """

    def __init__(self, **kwargs) -> None:  # as configs build it: by keyword
        self._atomic = (kwargs.get('backend_args') is None
                        and kwargs.get('file_client_args') is None
                        and '://' not in str(kwargs.get('out_dir') or ''))
        if self._atomic:
            kwargs['backend_args'] = dict(backend=ATOMIC_BACKEND)
        super().__init__(**kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._atomic and is_main_process():
            for directory in {self.out_dir, runner.work_dir}:
                if osp.isdir(directory):
                    remove_temporaries(directory)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        stale = self._keep(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if not is_main_process():  # rank 0 alone writes (Runner.save_checkpoint is master_only)
            return
        publish_checkpoint(runner.work_dir, self.last_ckpt)
        if stale is not None:
            self._remove(self.file_backend.join_path(self.out_dir,
                                                     self.filename_tmpl.format(stale)))
        interrupted = runner.message_hub.get_info(INTERRUPTED_CHECKPOINT)
        if self.max_keep_ckpts > 0 and interrupted and interrupted != self.last_ckpt:
            self._remove(interrupted)
            runner.message_hub.update_info(INTERRUPTED_CHECKPOINT, None)

    def _remove(self, path: str) -> None:
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # DeepSpeed writes directories
            self.file_backend.rmtree(path)

    def _keep(self, runner, step: int) -> Optional[int]:
        """mmengine's ``max_keep_ckpts`` book-keeping: note ``step``, return the step to remove."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return None  # the latest and the best checkpoint may share a step
        stale = None
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            stale = self.keep_ckpt_ids.popleft()
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return stale
