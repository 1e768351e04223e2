"""What tools/train.py and tools/test.py share: the command line and config preparation."""
from ..converters.paddleclas_scheme import PaddleClasCheckpointError
from .cli import add_runner_arguments, load_config, parse_runner_args
from .distributed import setup_cpu_distributed, sync_bn_to_bn
from .pretrained import MissingPretrainedError, check_pretrained_files

__all__ = ['MissingPretrainedError', 'PaddleClasCheckpointError', 'add_runner_arguments',
           'check_pretrained_files', 'load_config', 'parse_runner_args',
           'setup_cpu_distributed', 'sync_bn_to_bn']
