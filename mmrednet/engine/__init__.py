"""Training infrastructure: checkpoints that survive a kill, exact resume, preemption."""
from .fileio import ATOMIC_BACKEND, AtomicLocalBackend, publish_checkpoint, write_atomically
from .hooks import CheckpointHook, ExactResumeHook, PreemptionHook, TrainingInterrupted
from .random_state import get_random_state, set_random_state
from .resume_config import add_resume_hooks

__all__ = ['ATOMIC_BACKEND', 'AtomicLocalBackend', 'CheckpointHook', 'ExactResumeHook',
           'PreemptionHook', 'TrainingInterrupted', 'add_resume_hooks', 'get_random_state',
           'publish_checkpoint', 'set_random_state', 'write_atomically']
