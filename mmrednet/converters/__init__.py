"""Conversion of checkpoints written by the original involution code."""
from .official import ConversionReport, convert_state_dict, detect_layout, expand_stem_kernel

__all__ = ['ConversionReport', 'convert_state_dict', 'detect_layout', 'expand_stem_kernel']
