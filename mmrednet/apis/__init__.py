"""Helpers that tools/train.py and tools/test.py apply to a config before the Runner."""
from .distributed import setup_cpu_distributed
from .pretrained import MissingPretrainedError, check_pretrained_files

__all__ = ['MissingPretrainedError', 'check_pretrained_files', 'setup_cpu_distributed']
