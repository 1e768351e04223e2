"""Conversion of checkpoints written by the original involution code and by PaddleClas."""
from .official import (
    ConversionReport,
    convert_state_dict,
    detect_layout,
    expand_stem_kernel,
    load_source,
    rednet_depth,
    source_format,
    stem_kernel_of,
)
from .paddle import NumpyArrayUnpickler, RefusedPickleError, load_pdparams, paddle_to_official

__all__ = ['ConversionReport', 'NumpyArrayUnpickler', 'RefusedPickleError',
           'convert_state_dict', 'detect_layout', 'expand_stem_kernel', 'load_pdparams',
           'load_source', 'paddle_to_official', 'rednet_depth', 'source_format',
           'stem_kernel_of']
