from .checkpoint_safety import allow_mmengine_checkpoints
from .profiling import peak_memory, retained_memory, saved_bytes_inside, time_call

__all__ = ['allow_mmengine_checkpoints', 'peak_memory', 'retained_memory', 'saved_bytes_inside',
           'time_call']
