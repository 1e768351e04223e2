"""A resumed run that draws the same random numbers and batches as a run never stopped."""
import itertools
import logging
from typing import Any, Dict, List, Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log

from mmrednet.registry import HOOKS

from ..random_state import check_random_state, get_random_state, set_random_state

# The checkpoint entry this hook writes and reads.
STATE_KEY = 'exact_resume'


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Keep in each checkpoint what a resumed run needs to go on as if never stopped.

    Saved under ``exact_resume``: every rank's global random generators
    (Python's, NumPy's, torch's CPU and CUDA ones: see
    :func:`~mmrednet.engine.get_random_state`), those at the start
    of the current epoch, and how many of its batches were trained. Only plain
    tensors and numbers, so the checkpoint loads with ``weights_only=True``.

    On ``resume`` (not on ``load_from``):

    - An epoch-based loop continues the epoch at the batch after the last one
      trained; mmengine would restart the epoch. The epoch's generators are
      restored, its dataloader iterator created (the sampler draws the same
      order), the trained batches are loaded again and dropped, so that
      dataloader workers (seeded by mmengine each time they start) reach the
      state they had, and then the generators of the checkpoint are restored.
      An iteration-based loop skips the trained batches itself; the generators
      are restored after that, before the next batch is loaded.
    - Validation leaves the training's generators as they were (they are
      restored after it), so a run resumed from the checkpoint written before a
      validation draws what the uninterrupted run drew after it.

    Limits: workers with ``persistent_workers=True`` in an epoch-based loop carry
    their generators from epoch to epoch, which no checkpoint can hold: the
    resumed epochs draw other augmentations (a warning says so), while
    ``persistent_workers=False`` is exact. Samplers must take their order from
    their seed and epoch (mmengine's ``DefaultSampler`` and ``InfiniteSampler`` do)
    or from torch's global generator. In distributed runs rank 0 alone writes the
    checkpoint, so every rank's generators (about 16 kB) are gathered after each
    training iteration.
    """

    priority = 'LOW'  # after DistSamplerSeedHook sets the epoch, before CheckpointHook saves

    def __init__(self) -> None:
        self._loaded: Optional[Dict[str, Any]] = None  # from the checkpoint, until training starts
        self._first_epoch: Optional[Dict[str, Any]] = None  # what the first resumed epoch needs
        self._batches_done = 0  # batches of the current epoch trained
        self._skipped = 0  # batches of the current epoch fast-forwarded (not seen by hooks)
        self._epoch_start: Optional[List[dict]] = None  # every rank's generators at epoch start
        self._ranks: Optional[List[dict]] = None  # every rank's generators, distributed runs
        self._before_val: Optional[dict] = None

    # Saving ---------------------------------------------------------------------------------
    @staticmethod
    def _all_ranks(state: dict) -> List[dict]:
        return all_gather_object(state) if get_world_size() > 1 else [state]

    def _share(self, state: dict) -> None:
        """Distributed runs: note every rank's ``state`` for rank 0's next checkpoint."""
        if get_world_size() > 1:
            self._ranks = self._all_ranks(state)

    def before_train_epoch(self, runner) -> None:
        self._batches_done = self._skipped = 0
        first, self._first_epoch = self._first_epoch, None
        if first is None or first['batches'] == 0:
            if first is not None:  # resumed at an epoch boundary
                set_random_state(first['state'])
            self._epoch_start = self._all_ranks(get_random_state())
            return
        self._epoch_start = first['epoch_start']
        self._batches_done = self._skipped = first['batches']
        runner.train_loop.dataloader = _FastForward(runner.train_loop, first['batches'],
                                                    first['start_state'], first['state'])

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        self._batches_done = self._skipped + batch_idx + 1
        self._share(get_random_state())

    def after_train_epoch(self, runner) -> None:
        self._batches_done = self._skipped = 0  # a checkpoint now starts the next epoch
        self._share(get_random_state())

    def before_val(self, runner) -> None:
        self._before_val = get_random_state()
        self._share(self._before_val)

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_random_state(self._before_val)
            self._before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_world_size() > 1:
            ranks = self._ranks
        else:
            ranks = [self._before_val or get_random_state()]
        if ranks is None:  # a checkpoint before the first iteration: nothing to restore
            return
        checkpoint[STATE_KEY] = dict(
            iter=checkpoint['meta']['iter'], batches=self._batches_done, random_state=ranks,
            epoch_start=self._epoch_start if self._batches_done else None)

    # Resuming -------------------------------------------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._loaded = checkpoint.get(STATE_KEY)

    def before_train(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if runner.iter == 0:  # a fresh run, or load_from (fine-tuning starts anew)
            return
        if loaded is None:
            print_log('The resumed checkpoint holds no random state (it was written without '
                      'ExactResumeHook): the resumed run draws other augmentations than an '
                      'uninterrupted run would.', logger='current', level=logging.WARNING)
            return
        saved = _checked(loaded, runner.iter)
        if len(saved['random_state']) != get_world_size():
            print_log(f'The checkpoint holds the random state of {len(saved["random_state"])} '
                      f'processes, this run has {get_world_size()}: the resumed run draws other '
                      'augmentations than an uninterrupted run would.', logger='current',
                      level=logging.WARNING)
            return
        rank = get_rank()
        state = saved['random_state'][rank]
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop skips runner.iter batches
            loop.dataloader_iterator = _RestoreAfter(loop, runner.iter, state)
            return
        epoch_start = saved['epoch_start']
        self._first_epoch = dict(
            batches=saved['batches'], state=state, epoch_start=epoch_start,
            start_state=epoch_start[rank] if epoch_start else None)
        dataloader = loop.dataloader
        if getattr(dataloader, 'persistent_workers', False) and dataloader.num_workers > 0:
            print_log('train_dataloader.persistent_workers=True: its workers start with fresh '
                      'random generators, so the resumed epochs draw other augmentations than an '
                      'uninterrupted run would (persistent_workers=False resumes exactly).',
                      logger='current', level=logging.WARNING)


def _checked(saved: Any, resumed_iter: int) -> Dict[str, Any]:
    """``saved`` (read from a checkpoint file) if it is what :class:`ExactResumeHook` writes."""
    if not isinstance(saved, dict) or not {'iter', 'batches', 'random_state',
                                           'epoch_start'} <= saved.keys():
        raise ValueError(f'checkpoint[{STATE_KEY!r}] must be a dict with iter, batches, '
                         f'random_state and epoch_start, got {type(saved).__name__}')
    if saved['iter'] != resumed_iter:
        raise ValueError(f'checkpoint[{STATE_KEY!r}] was saved at iteration {saved["iter"]!r}, '
                         f'the checkpoint resumes iteration {resumed_iter}')
    batches = saved['batches']
    if not isinstance(batches, int) or isinstance(batches, bool) or batches < 0:
        raise ValueError(f'checkpoint[{STATE_KEY!r}].batches must be an int >= 0, got {batches!r}')
    for key in ('random_state', 'epoch_start'):
        states = saved[key]
        if states is None and key == 'epoch_start' and batches == 0:
            continue
        if not isinstance(states, list) or not states:
            raise ValueError(f'checkpoint[{STATE_KEY!r}].{key} must be a list with one random '
                             f'state per process, got {type(states).__name__}')
        if key == 'epoch_start' and len(states) != len(saved['random_state']):
            raise ValueError(f'checkpoint[{STATE_KEY!r}].epoch_start must have one state per '
                             'process, as random_state has')
        for state in states:
            check_random_state(state)
    return saved


class _FastForward:
    """The train dataloader of the first epoch resumed mid-epoch (see :class:`ExactResumeHook`)."""

    def __init__(self, loop, batches: int, start_state: dict, state: dict) -> None:
        self._loop = loop
        self._dataloader = loop.dataloader
        self._batches = batches
        self._start_state = start_state
        self._state = state

    def __len__(self) -> int:
        return len(self._dataloader)

    def __getattr__(self, name: str):  # the dataloader's sampler, dataset, ... for other hooks
        if name == '_dataloader':  # not set yet (copy, pickle)
            raise AttributeError(name)
        return getattr(self._dataloader, name)

    def __iter__(self):
        self._loop.dataloader = self._dataloader  # later epochs iterate it directly
        set_random_state(self._start_state)
        iterator = iter(self._dataloader)
        for _ in itertools.islice(iterator, self._batches):
            pass
        set_random_state(self._state)
        return iterator


class _RestoreAfter:
    """An iteration-based loop's data iterator: restores the generators after ``skip`` batches."""

    def __init__(self, loop, skip: int, state: dict) -> None:
        self._loop = loop
        self._iterator = loop.dataloader_iterator
        self._skip = skip
        self._state = state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0:
            set_random_state(self._state)
            self._loop.dataloader_iterator = self._iterator
        else:
            self._skip -= 1
        return next(self._iterator)
