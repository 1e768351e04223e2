"""Hooks that make a stopped run resumable to the same result (registered in ``mmrednet``)."""
from .checkpoint_hook import CheckpointHook
from .exact_resume_hook import ExactResumeHook
from .preemption_hook import PreemptionHook, TrainingInterrupted

__all__ = ['CheckpointHook', 'ExactResumeHook', 'PreemptionHook', 'TrainingInterrupted']
