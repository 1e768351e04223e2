"""Switch on the resume and preemption hooks in a config, visibly and so that users can opt out."""
from mmengine.config import Config

# Hooks tools/train.py adds to ``default_hooks`` unless the config names them.
# ``default_hooks.<name>=None`` switches one off (mmengine itself would refuse None
# for a name that is not one of its own default hooks).
RESUME_HOOKS = dict(
    exact_resume=dict(type='mmrednet.ExactResumeHook'),
    preemption=dict(type='mmrednet.PreemptionHook'),
)
# mmengine's CheckpointHook under its registered name; an explicit 'mmengine.CheckpointHook'
# keeps mmengine's own writer.
_MMENGINE_CHECKPOINT_HOOK = 'CheckpointHook'


def add_resume_hooks(cfg: Config) -> None:
    """Make ``cfg``'s training resumable to the same result and stoppable by a signal.

    - ``default_hooks.exact_resume``: :class:`~mmrednet.engine.ExactResumeHook`
      (random state and data position in every checkpoint).
    - ``default_hooks.preemption``: :class:`~mmrednet.engine.PreemptionHook`
      (checkpoint, Slurm requeue and exit on SIGTERM/SIGUSR1).
    - ``default_hooks.checkpoint``: mmengine's ``CheckpointHook`` becomes
      :class:`~mmrednet.engine.CheckpointHook` (same arguments, atomic files);
      without one, mmengine's default (a checkpoint every epoch) is added as ours.

    A hook the config already sets (in ``default_hooks`` or ``custom_hooks``) is left
    as it is; one set to None in ``default_hooks`` is removed.

    Args:
        cfg (Config): The config the Runner will be built from (edited in place).
    """
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    hooks = cfg.default_hooks
    custom = {hook.get('type') for hook in cfg.get('custom_hooks') or []}
    for name, hook in RESUME_HOOKS.items():
        if name in hooks:
            if hooks[name] is None:
                del hooks[name]
        elif not {hook['type'], hook['type'].split('.')[1]} & custom:
            hooks[name] = dict(hook)
    if 'checkpoint' not in hooks:
        hooks['checkpoint'] = dict(type='mmrednet.CheckpointHook', interval=1)
    elif hooks['checkpoint'] is not None and \
            hooks['checkpoint'].get('type') == _MMENGINE_CHECKPOINT_HOOK:
        hooks['checkpoint']['type'] = 'mmrednet.CheckpointHook'
