from .checkpoint_safety import allow_mmengine_checkpoints, load_mmengine_checkpoint
from .csv_rows import write_csv
from .model_config import model_config
from .profiling import (
                        interleaved_times,
                        peak_memory,
                        retained_memory,
                        saved_bytes_inside,
                        time_call,
)
from .setup_env import register_all_modules

__all__ = ['allow_mmengine_checkpoints', 'interleaved_times', 'load_mmengine_checkpoint',
           'model_config', 'peak_memory', 'register_all_modules', 'retained_memory',
           'saved_bytes_inside', 'time_call', 'write_csv']
