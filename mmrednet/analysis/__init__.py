"""Model complexity (params and FLOPs) with involution counted."""
from .complexity import count_params, flop_analyzer, involution_flop_jit, model_complexity

__all__ = ['count_params', 'flop_analyzer', 'involution_flop_jit', 'model_complexity']
